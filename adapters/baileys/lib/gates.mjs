// Gates: every call into the auth state (keys.get, keys.set, saveCreds)
// and every write its code makes to a file or a PostgreSQL database waits
// for the harness (docs/baileys.md, "Controlled interleaving").
//
// A gate belongs to the task whose async context made the call
// (AsyncLocalStorage): a receive of one stanza, a reply, the login. It is
// reported as an event and released by a step; the released call runs in
// the context it was made in. Writes are gated below the store: a file's
// open for writing, each write to it, a rename or unlink, a PostgreSQL
// query; reads are not gated (they change nothing) but are waited for. A
// write not yet released when the harness kills the process never
// happened; one released has completed (quiet waits for it), so a kill
// lands at the same place on any machine, inside a set() that is still
// writing as well as between two calls.
import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks'
import { createRequire, syncBuiltinESMExports } from 'node:module'
import { real } from './det.mjs'

const require = createRequire(import.meta.url)
const fs = require('node:fs')
const fsp = fs.promises

// The context of a piece of async work: its task, and the store call it
// runs inside (null outside any).
export const als = new AsyncLocalStorage()

export class Task {
	constructor(name) {
		this.name = name
		this.failure = null // the last decrypt failure seen in this task: { class, err }
	}
}

let seq = 0
let auto = false // serial runs and provisioning: gates release at once
// probing: a crash's kept writes are running to see whether each was its
// call's last (keepForCrash); store calls no longer answer their caller
// and new gates park silently until the kill.
let probing = false
export const parked = new Map() // id -> gate
export let events = []
let inflight = 0 // released writes not yet complete, and untracked store calls
const activeCalls = new Set() // released store calls not yet settled

export function takeEvents() {
	const e = events
	events = []
	return e
}

export function setAuto(on) { auto = on }

// The reference run (docs/baileys.md, "Who is blamed"): the store's own
// writes run at once, and each store call instead waits for as many steps
// (pads) as the candidate's call took below its store, then takes effect
// whole: an atomic store that is exactly as slow as the candidate.
let ioAuto = false
let pads = null // task name -> steps of each of its store calls, in call order since the login's open
const padding = new Map() // 'task#call' -> the call waiting at its pads: { run }
export function setReference(on) {
	ioAuto = on
	pads = on ? {} : null
	padding.clear()
}
export function isReference() { return ioAuto }

// setPads gives the reference run one login's pads (the adapter names
// its tasks afresh at each open).
export function setPads(p) {
	if (ioAuto) pads = p || {}
}

// commitAtCrash makes the store calls the candidate's crash completed
// take effect whole before the reference run's kill: { task: [call, ...] }.
export async function commitAtCrash(commit) {
	for (const [task, calls] of Object.entries(commit || {})) {
		for (const i of calls) {
			const c = padding.get(`${task}#${i}`)
			if (c) {
				padding.delete(`${task}#${i}`)
				await c.run()
			}
		}
	}
}

export function resetGates() {
	probing = false
	parked.clear()
	padding.clear()
	events = []
	seq = 0
	inflight = 0
	activeCalls.clear()
}

export function pushEvent(e) { events.push(e) }

export function note(text) {
	const ctx = als.getStore()
	events.push({ task: ctx?.task?.name || 'device', note: text })
}

// runIn runs fn in the context of task t.
export function runIn(t, fn) {
	return als.run({ task: t, call: null }, fn)
}

function park(kind, call, fn, opts = {}) {
	const ctx = als.getStore()
	const res = new AsyncResource('badmac-gate')
	if (auto || !ctx || (ioAuto && kind === 'io')) {
		if (kind === 'io') return track(res.runInAsyncScope(fn))
		return res.runInAsyncScope(fn)
	}
	const id = `g${++seq}`
	return new Promise((resolve, reject) => {
		const g = {
			id, kind, call, task: ctx.task.name, write: !!opts.write, tear: opts.tear, sync: opts.sync, mark: ctx.mark, probe: probing,
			release: () => {
				parked.delete(id)
				return res.runInAsyncScope(() => {
					let p
					try {
						p = Promise.resolve(fn())
					} catch (e) {
						p = Promise.reject(e)
					}
					if (kind === 'io') {
						inflight++
						p = p.finally(() => { inflight-- })
					}
					p.then((v) => { if (kind !== 'call' || !probing) resolve(v) }, (e) => { if (kind !== 'call' || !probing) reject(e) })
					return p
				})
			},
		}
		parked.set(id, g)
		if (g.probe) return
		events.push({ task: g.task, gate: id, call, ...(g.write && g.sync ? { write: true } : {}), ...(g.write && g.sync && g.tear ? { tear: true } : {}), ...(kind !== 'call' ? { io: true } : {}) })
	})
}

// storeCall is a call into the auth state: it parks, then runs fn inside
// a store-call context (the writes fn makes are gated too).
export function storeCall(call, fn) {
	const t = als.getStore()?.task
	// Counted as the candidate's gates are: only calls that wait for a step.
	const n = pads && t && !auto ? (t.calls = (t.calls ?? -1) + 1) : -1
	const k = (n >= 0 && pads[t.name]?.[n]) || 0
	if (k > 0) {
		const inner = fn
		fn = async () => {
			// Until its last pad, a crash that completed the candidate's
			// call runs it whole (commitAtCrash).
			const key = `${t.name}#${n}`
			let result
			padding.set(key, { run: () => (result = Promise.resolve().then(inner)) })
			for (let i = 1; i <= k && !result; i++) await park('pad', `(${call}: step ${i} of ${k})`, () => undefined)
			if (result) return result
			padding.delete(key)
			return inner()
		}
	}
	return park('call', call, () => {
		const ctx = als.getStore()
		const mark = { call }
		const run = () => {
			activeCalls.add(mark)
			const p = Promise.resolve().then(fn)
			p.finally(() => activeCalls.delete(mark)).catch(() => {})
			return p
		}
		return ctx ? als.run({ task: ctx.task, call, mark }, run) : run()
	})
}

function inStore() {
	return !!als.getStore()?.call
}

// io gates a write made inside a store call; outside one it runs at once.
// sync does the same write synchronously (a crash that keeps it: mode k),
// tear writes a fraction of it (mode g); a write without sync (a SQL
// statement) is dropped by any crash that finds it parked.
function io(call, fn, sync, tear) {
	if (!inStore()) return fn()
	if (sync) fileWrites++
	return park('io', call, fn, { write: true, sync, tear })
}

// fileWrites counts the store's writes to files (the harness tears only
// stores that write files).
let fileWrites = 0
export function filesWritten() { return fileWrites }

// ---- files ------------------------------------------------------------------

const realFsp = {
	writeFile: fsp.writeFile, appendFile: fsp.appendFile, rename: fsp.rename, unlink: fsp.unlink,
	rm: fsp.rm, copyFile: fsp.copyFile, open: fsp.open,
}
const realFs = { writeFile: fs.writeFile, appendFile: fs.appendFile, rename: fs.rename, unlink: fs.unlink }

const short = (p) => String(p).split('/').slice(-1)[0]
const isWriteFlag = (f) => typeof f === 'string' ? /[wa+]/.test(f) : typeof f === 'number' && (f & (fs.constants.O_WRONLY | fs.constants.O_RDWR)) !== 0
const bytesOf = (data, opts) => Buffer.isBuffer(data) ? data : ArrayBuffer.isView(data)
	? Buffer.from(data.buffer, data.byteOffset, data.byteLength)
	: Buffer.from(String(data), typeof opts === 'string' ? opts : opts?.encoding || 'utf8')

// writeFile is two writes, as the kernel sees fs.writeFile: opening the
// file truncates it, then the content goes in. Two unlocked writeFiles of
// one file can interleave between them, and a kill between them leaves an
// empty file; a kill at the second may tear it (crash mode g).
async function gatedWriteFile(path, data, opts) {
	if (typeof path !== 'string' && !(path instanceof URL)) return realFsp.writeFile(path, data, opts) // a FileHandle
	const flag = (typeof opts === 'object' && opts?.flag) || 'w'
	const bytes = bytesOf(data, opts)
	const name = short(path)
	const fh = await io(`open ${name} (${flag === 'w' ? 'truncate' : flag})`, () => realFsp.open(path, flag, opts?.mode),
		() => fs.closeSync(fs.openSync(path, flag)))
	try {
		await io(`write ${name} (${bytes.length} bytes)`, () => fh.writeFile(bytes),
			() => fs.writeSync(fh.fd, bytes), (frac) => fs.writeSync(fh.fd, bytes.subarray(0, Math.floor(bytes.length * frac))))
	} finally {
		await fh.close()
	}
}

async function gatedOpen(path, flags, mode) {
	const w = isWriteFlag(flags)
	const fh = await (w ? io(`open ${short(path)} (${flags})`, () => realFsp.open(path, flags, mode), () => fs.closeSync(fs.openSync(path, flags, mode))) : realFsp.open(path, flags, mode))
	if (w && inStore()) {
		const name = short(path)
		const wr = fh.write.bind(fh), wf = fh.writeFile.bind(fh), s = fh.sync.bind(fh), ds = fh.datasync.bind(fh)
		fh.write = (buf, ...a) => io(`write ${name}`, () => wr(buf, ...a), () => fs.writeSync(fh.fd, buf, ...a))
		fh.writeFile = (data, o) => io(`write ${name}`, () => wf(data, o), () => fs.writeSync(fh.fd, bytesOf(data, o)))
		fh.sync = () => io(`fsync ${name}`, s, () => fs.fsyncSync(fh.fd))
		fh.datasync = () => io(`fsync ${name}`, ds, () => fs.fdatasyncSync(fh.fd))
	}
	return fh
}

fsp.writeFile = gatedWriteFile
fsp.appendFile = (p, d, o) => io(`append ${short(p)}`, () => realFsp.appendFile(p, d, o), () => fs.appendFileSync(p, d, o))
fsp.rename = (a, b) => io(`rename ${short(a)} -> ${short(b)}`, () => realFsp.rename(a, b), () => fs.renameSync(a, b))
fsp.unlink = (p) => io(`unlink ${short(p)}`, () => realFsp.unlink(p), () => { try { fs.unlinkSync(p) } catch { /* gone */ } })
fsp.rm = (p, o) => io(`rm ${short(p)}`, () => realFsp.rm(p, o), () => fs.rmSync(p, { force: true, ...o }))
fsp.copyFile = (a, b, m) => io(`copy ${short(a)} -> ${short(b)}`, () => realFsp.copyFile(a, b, m), () => fs.copyFileSync(a, b, m))
fsp.open = gatedOpen
const cbify = (p, cb) => p.then((v) => cb(null, v), (e) => cb(e))
fs.writeFile = (p, d, o, cb) => { if (typeof o === 'function') { cb = o; o = undefined } cbify(gatedWriteFile(p, d, o), cb) }
fs.appendFile = (p, d, o, cb) => { if (typeof o === 'function') { cb = o; o = undefined } cbify(fsp.appendFile(p, d, o), cb) }
fs.rename = (a, b, cb) => cbify(fsp.rename(a, b), cb)
fs.unlink = (p, cb) => cbify(fsp.unlink(p), cb)
syncBuiltinESMExports()

// ---- PostgreSQL (node-postgres) ----------------------------------------------

// pg's Client.query is the unit: a query made inside a store call is a
// write (it may be one) that waits for a step; its answer is waited for.
// Connecting is waited for too. The module is patched where the user's
// store loads it from (hookModule).
const patchedPg = new WeakSet()
export function patchPg(pg) {
	const Client = pg?.Client
	if (!Client || patchedPg.has(Client.prototype)) return
	patchedPg.add(Client.prototype)
	const q = Client.prototype.query
	const c = Client.prototype.connect
	Client.prototype.query = function (config, values, cb) {
		if (typeof values === 'function') { cb = values; values = undefined }
		const text = typeof config === 'string' ? config : config?.text || config?.name || 'query'
		const run = () => new Promise((resolve, reject) => {
			const r = q.call(this, config, values, (err, res) => (err ? reject(err) : resolve(res)))
			if (r && typeof r.then === 'function') r.then(resolve, reject)
		})
		const sql = String(text).replace(/\s+/g, ' ').trim()
		const write = !/^(select|with [^()]*\([^)]*\) *select|show|begin|rollback)\b/i.test(sql)
		const p = inStore() && write ? io(`sql ${sql.slice(0, 60)}`, () => run()) : track(run())
		if (typeof cb === 'function') {
			p.then((res) => cb(null, res), (e) => cb(e))
			return undefined
		}
		return p
	}
	Client.prototype.connect = function (cb) {
		const p = track(c.call(this))
		if (typeof cb === 'function') {
			p.then(() => cb(null), (e) => cb(e))
			return undefined
		}
		return p
	}
}

// track counts a promise as work in flight until it settles.
export function track(p) {
	inflight++
	return Promise.resolve(p).finally(() => { inflight-- })
}

// hookModule patches drivers as the user's code loads them.
{
	const Module = require('node:module')
	const load = Module._load
	Module._load = function (request, parent, isMain) {
		const m = load.apply(this, arguments)
		if (request === 'pg' || request.endsWith('/pg/lib/index.js')) patchPg(m)
		return m
	}
}

// A FileHandle's close is a request no active resource shows: counted as
// in flight until it ends (a store's write continues after it).
{
	const fh = await fsp.open(process.execPath, 'r')
	const proto = Object.getPrototypeOf(fh)
	await fh.close()
	const close = proto.close
	proto.close = function () { return track(close.call(this)) }
}

// ---- work Node does off the main thread ----------------------------------------

// Web Crypto (Baileys 6 derives its noise keys with crypto.subtle), the
// callback forms of crypto's key derivations and zlib's one-shot calls run
// on the thread pool and show in no active resource: each is counted as
// in flight until it ends.
{
	const nodeCrypto = require('node:crypto')
	const subtle = nodeCrypto.webcrypto?.subtle
	const proto = subtle && Object.getPrototypeOf(subtle)
	if (proto) {
		for (const m of ['encrypt', 'decrypt', 'sign', 'verify', 'digest', 'generateKey', 'deriveKey', 'deriveBits', 'importKey', 'exportKey', 'wrapKey', 'unwrapKey']) {
			const f = proto[m]
			if (typeof f === 'function') proto[m] = function (...a) { return track(f.apply(this, a)) }
		}
	}
	const withCallback = (mod, names) => {
		for (const n of names) {
			const f = mod[n]
			if (typeof f !== 'function') continue
			mod[n] = function (...a) {
				const cb = a[a.length - 1]
				if (typeof cb !== 'function') return f.apply(this, a)
				inflight++
				a[a.length - 1] = (...r) => { inflight--; cb(...r) }
				return f.apply(this, a)
			}
		}
	}
	withCallback(nodeCrypto, ['pbkdf2', 'hkdf', 'scrypt', 'randomFill', 'generateKeyPair'])
	withCallback(require('node:zlib'), ['inflate', 'deflate', 'inflateRaw', 'deflateRaw', 'gzip', 'gunzip', 'unzip', 'brotliCompress', 'brotliDecompress'])
	syncBuiltinESMExports()
}

// ---- quiet -----------------------------------------------------------------

const busyResource = /^(FSReq|WriteWrap|ShutdownWrap|TCPConnectWrap|GetAddrInfoReqWrap|GetNameInfoReqWrap|Zlib|.*REQUEST$)/

// quiet waits until nothing runs but what waits for the harness: every
// task parked at a gate, finished, or waiting for a lock or for the server;
// no write in flight, no file or socket request pending, no microtask.
// A store call that has neither finished nor reached a parked write waits
// for I/O the adapter does not gate (a read, or a driver other than pg):
// it is waited for, unless some write is parked (the call may wait for a
// lock its writer holds).
// Requests Node runs off the main thread (file closes that no active
// resource shows, among them): each counts as in flight from its init to
// its callback.
const pendingReq = new Set()
{
	const ah = require('node:async_hooks')
	const isReq = (type) => /REQ$|REQUEST$|REQWRAP$/.test(type)
	ah.createHook({
		init(id, type) { if (isReq(type)) pendingReq.add(id) },
		after(id) { pendingReq.delete(id) },
		destroy(id) { pendingReq.delete(id) },
	}).enable()
}
export async function quiet(extraBusy = () => false) {
	let calm = 0
	while (calm < 3) {
		await new Promise((r) => real.setImmediate(r))
		const busy = inflight > 0 || pendingReq.size > 0 || extraBusy() ||
			process.getActiveResourcesInfo().some((n) => busyResource.test(n)) ||
			(activeCalls.size > 0 && ![...parked.values()].some((g) => g.kind !== 'call'))
		calm = busy ? 0 : calm + 1
	}
	if (process.env.BADMAC_DEBUG) process.stderr.write(`debug: quiet: active calls [${[...activeCalls].map((m) => m.call).join('; ')}]; inflight ${inflight}; parked ${[...parked.values()].map((g) => g.task + ':' + g.call).join('; ')}; req ${pendingReq.size}\n`)
}

// pendingWrites are the parked writes, oldest first (crash modes apply to
// them in this order).
export function pendingWrites() {
	return [...parked.values()].filter((g) => g.write && g.sync && !g.probe)
}

// keepForCrash is a kill's first half: each parked write is kept (k, or g
// on a write that cannot be torn), torn (g: a prefix written) or dropped
// (d, or unlisted) as modes says, in the order they parked. A kept write
// is made by letting it run, and its store call runs on to its next write
// (which parks until the kill, never made) or its end: the call's last
// write (docs/baileys.md, "The crash's attribution"). The store calls'
// callers hear nothing any more. It returns the tasks with a kept write
// whose store call did not end: a write of a temporary file whose rename
// was still to come did not complete its call.
export async function keepForCrash(modes, wait) {
	const kept = []
	pendingWrites().forEach((g, i) => {
		const m = modes[i] || 'd'
		if (m === 'k' || (m === 'g' && !g.tear)) kept.push(g)
		else if (m === 'g') g.tear(0.5)
	})
	probing = true
	const before = events.length
	for (const g of kept) g.release()
	await wait()
	events.length = before
	return [...new Set(kept.filter((g) => g.mark && activeCalls.has(g.mark)).map((g) => g.task))].sort()
}
