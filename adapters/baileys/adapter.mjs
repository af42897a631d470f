// badmac device adapter for Baileys: the device under test is Baileys' real
// signal repository (makeLibSignalRepository) over its real key-store layers
// (addTransactionCapability, makeCacheableSignalKeyStore, useMultiFileAuthState),
// imported from the installed packages, driven by the badmac harness over the
// device protocol (docs/device-protocol.md: JSON lines on stdin/stdout, one
// reply per request).
//
// Controlled interleaving: the bottom key store (the multi-file state) is an
// async gate. Every keys.get, keys.set and saveCreds a task makes parks the
// task and is reported to the harness as an event; the task goes on only when
// the harness steps it. After each request the adapter waits until it is
// quiescent (no file I/O in flight, microtasks drained) and replies with what
// happened: gates reached, tasks finished. The harness decides every
// interleaving, so a schedule is data and replays.
//
// usage: node adapter.mjs --baileys 6.17.16|7.0.0-rc14 --variant stock|seedfix|locked --dir AUTHDIR --seed N
import { die, serve } from './lib/lines.mjs'
import { b64, classify, credsView, strip } from './lib/signal.mjs'
import { createRequire, syncBuiltinESMExports } from 'node:module'
import { AsyncLocalStorage } from 'node:async_hooks'
import { createHash } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

const require = createRequire(import.meta.url)
const PROTOCOL = 'badmac device v1'
const VERSIONS = { '6.17.16': 'baileys6', '7.0.0-rc14': 'baileys7' }
const VARIANTS = ['stock', 'seedfix', 'locked']

// ---- arguments -----------------------------------------------------------


const args = {}
for (let i = 2; i < process.argv.length; i += 2) {
	const k = process.argv[i]
	if (!k.startsWith('--') || i + 1 >= process.argv.length) die(`bad argument ${JSON.stringify(k)}`)
	args[k.slice(2)] = process.argv[i + 1]
}
const pkg = VERSIONS[args.baileys]
if (!pkg) die(`unknown Baileys version ${JSON.stringify(args.baileys)} (known: ${Object.keys(VERSIONS).join(', ')})`)
let variant = args.variant || 'stock'
if (!VARIANTS.includes(variant)) die(`unknown variant ${JSON.stringify(variant)} (known: ${VARIANTS.join(', ')})`)
if (!args.dir) die('--dir is required')
let seed = BigInt(args.seed || '0')

// ---- stdout is the protocol channel ---------------------------------------

// libsignal-node logs with console.* (some to stdout); nothing but protocol
// lines may reach stdout. Its decrypt errors are logged, not thrown (the
// thrown error is "No matching sessions found for message"), so console.error
// is read to classify a failure (Bad MAC vs old counter), per task.
const tasksALS = new AsyncLocalStorage()
const quiet = () => {}
console.log = console.info = console.debug = console.warn = quiet
console.error = (...a) => {
	const t = tasksALS.getStore()
	if (t) t.logged.push(a.map(String).join(' '))
}

// ---- seeded randomness ----------------------------------------------------

// libsignal-node draws ratchet keys from crypto.randomBytes; a seeded stream
// (SHA-256 in counter mode) makes a run's key material, and so its bytes,
// reproducible. syncBuiltinESMExports carries the patch to ESM named imports
// (Baileys 7 imports { randomBytes } from 'crypto').
const nodeCrypto = require('crypto')
let rngCounter = 0n
function seededBytes(n, cb) {
	const buf = Buffer.alloc(n)
	for (let off = 0; off < n; off += 32) {
		const h = createHash('sha256').update(`badmac-baileys:${seed}:${rngCounter++}`).digest()
		h.copy(buf, off, 0, Math.min(32, n - off))
	}
	if (typeof cb === 'function') { process.nextTick(cb, null, buf); return }
	return buf
}
nodeCrypto.randomBytes = seededBytes
syncBuiltinESMExports()

// The clock is a counter: libsignal-node orders a record's sessions by
// their last use (Date.now()), and a tie or its absence must not depend on
// the machine's speed. One millisecond per call, from 2026-01-01; cache
// TTLs (five minutes) are never reached within a run.
{
	let now = 1767225600000
	Date.now = () => ++now
}

// ---- task attribution ------------------------------------------------------

// A gate names the task whose async context made the call. Queues that run
// a waiting job from the releasing job's context (p-queue, Baileys 7's
// per-type key queues; async-lock, Baileys 6's file locks) would name the
// wrong task; their jobs are bound to the context that queued them. This
// changes names in the history only, never the order anything runs in.
{
	const { AsyncResource } = await import('node:async_hooks')
	const PQueue = (await import('p-queue')).default
	const add = PQueue.prototype.add
	PQueue.prototype.add = function (fn, opts) { return add.call(this, AsyncResource.bind(fn), opts) }
	const AsyncLock = require('async-lock')
	const acquire = AsyncLock.prototype.acquire
	AsyncLock.prototype.acquire = function (key, fn, ...rest) { return acquire.call(this, key, AsyncResource.bind(fn), ...rest) }
}

// ---- Baileys, imported from the installed package --------------------------

const B = await import(pkg).then((m) => (m.makeCacheableSignalKeyStore ? m : m.default))
const signalMod = pkg === 'baileys6'
	? require(`${pkg}/lib/Signal/libsignal.js`)
	: await import(`${pkg}/lib/Signal/libsignal.js`)
const { makeLibSignalRepository } = signalMod
const { makeMutex, makeKeyedMutex } = pkg === 'baileys6'
	? require(`${pkg}/lib/Utils/make-mutex.js`)
	: await import(`${pkg}/lib/Utils/make-mutex.js`)
const libsignal = require('libsignal')

const logger = { level: 'silent', trace: quiet, debug: quiet, info: quiet, warn: quiet, error: quiet, fatal: quiet }
logger.child = () => logger
// Socket defaults (Defaults/index: transactionOpts).
const txnOpts = { maxCommitRetries: 10, delayBetweenTriesMs: 3000 }

// ---- the gate --------------------------------------------------------------

let gateSeq = 0
const parked = new Map() // gate id -> { task, call, release }
let events = []

// gated runs a store call under the harness's control: a call made by a
// task waits for a step; one made outside any task (provisioning) runs.
function gated(call, fn) {
	const t = tasksALS.getStore()
	if (!t) {
		if (process.env.BADMAC_DEBUG) require("fs").appendFileSync(process.env.BADMAC_DEBUG, `ungated: ${call}\n${new Error().stack}\n`)
		return fn()
	}
	const id = `g${++gateSeq}`
	return new Promise((resolve, reject) => {
		parked.set(id, { task: t.name, call, release: () => fn().then(resolve, reject) })
		events.push({ task: t.name, gate: id, call })
	})
}

function describe(data) {
	const parts = []
	for (const type of Object.keys(data).sort()) {
		for (const id of Object.keys(data[type]).sort()) parts.push(`${type} ${id}${data[type][id] ? '' : ' (delete)'}`)
	}
	return parts.join(', ')
}

// ---- the device: store stack, repository, concurrency ----------------------

let dev = null // { creds, files, keys, repo, saveCreds, recvMutex, encMutex, addrMutex }
let writes = 0

async function open() {
	await mkdir(args.dir, { recursive: true })
	const { state, saveCreds } = await B.useMultiFileAuthState(args.dir)
	const files = state.keys
	// The bottom store, gated: what every upper layer calls.
	// The gate stands for the store's I/O. useMultiFileAuthState reads its
	// arguments synchronously when called (it starts one writeFile per key
	// before awaiting any), so the call is made on a copy taken at call
	// time: a caller that mutates the object while the I/O is pending (6.x's
	// transaction commit hands over its live mutations map) changes nothing
	// on disk, as in the real store.
	const bottom = {
		get: (type, ids) => { const c = [...ids]; return gated(`get ${type} ${c.join(',')}`, () => files.get(type, c)) },
		set: (data) => {
			const c = {}
			for (const type in data) c[type] = { ...data[type] }
			return gated(`set ${describe(c)}`, () => { writes++; return files.set(c) })
		},
	}
	const save = () => gated('save creds', () => { writes++; return saveCreds() })
	let keys
	switch (variant) {
	case 'stock':
		// What a Baileys bot writes: keys: makeCacheableSignalKeyStore(state.keys, logger);
		// the socket then wraps it in addTransactionCapability (Socket/socket.js).
		keys = B.addTransactionCapability(B.makeCacheableSignalKeyStore(bottom, logger), logger, txnOpts)
		break
	case 'seedfix': {
		// The seed's fix (docs/design.md §3): one mutex around each keys.get
		// and keys.set, set followed by saveCreds, no cache; the socket still
		// adds its transaction layer.
		const m = makeMutex()
		const sync = {
			get: (type, ids) => m.mutex(() => bottom.get(type, ids)),
			set: (data) => m.mutex(async () => { await bottom.set(data); await save() }),
		}
		keys = B.addTransactionCapability(sync, logger, txnOpts)
		break
	}
	case 'locked':
		// The correct discipline: no cache; every receive and send holds its
		// contact address's lock across load→decrypt/encrypt→store (below).
		keys = B.addTransactionCapability(bottom, logger, txnOpts)
		break
	}
	if (process.env.BADMAC_DEBUG) {
		const tx = keys.transaction, fs = require('fs')
		keys.transaction = (work, key) => {
			fs.appendFileSync(process.env.BADMAC_DEBUG, `txn ${tasksALS.getStore()?.name} key=${key} nested=${keys.isInTransaction()}\n`)
			return tx(work, key)
		}
	}
	const auth = { creds: state.creds, keys }
	const repo = pkg === 'baileys6' ? makeLibSignalRepository(auth) : makeLibSignalRepository(auth, logger, async () => undefined)
	dev = {
		creds: state.creds, files, keys, repo, saveCreds: save, rawSaveCreds: saveCreds,
		recvMutex: makeMutex(), // processingMutex (6.x) / messageMutex (7.x): one receive at a time
		encMutex: makeKeyedMutex(), // 7.x relayMessage's encryptionMutex, keyed by jid
		addrMutex: makeKeyedMutex(), // locked variant
	}
}

const unb64 = (s, what) => {
	if (typeof s !== 'string') throw new Error(`${what}: want base64 string`)
	return Buffer.from(s, 'base64')
}
const jidOf = (user, device) => (device ? `${user}:${device}@s.whatsapp.net` : `${user}@s.whatsapp.net`)
const meId = 'bot:0@s.whatsapp.net'


async function genPreKeys(n) {
	const out = []
	const data = {}
	for (let i = 0; i < n; i++) {
		const id = dev.creds.nextPreKeyId++
		const kp = B.Curve.generateKeyPair()
		data[id] = kp
		out.push({ id, pub: b64(strip(kp.public)) })
	}
	await dev.files.set({ 'pre-key': data })
	dev.creds.firstUnuploadedPreKeyId = dev.creds.nextPreKeyId
	await dev.rawSaveCreds()
	return out
}


// The tasks: each version's own concurrency around the real repository.
function receive({ peer, peer_dev: pdev, kind, ct }) {
	const jid = jidOf(peer, pdev)
	const data = unb64(ct, 'ct')
	const decrypt = () => dev.repo.decryptMessage({ jid, type: kind, ciphertext: data })
	if (variant === 'locked') return dev.addrMutex.mutex(jid, decrypt)
	// Socket/messages-recv.js handleMessage: processingMutex / messageMutex.
	return dev.recvMutex.mutex(decrypt)
}

function send({ peer, peer_dev: pdev, pt, bundle }) {
	const jid = jidOf(peer, pdev)
	const data = B.writeRandomPadMax16(unb64(pt, 'pt'))
	const work = async () => {
		// relayMessage: assertSessions (keys.get session; a retry receipt's
		// keys force a new session) then encrypt, inside keys.transaction.
		const addr = dev.repo.jidToSignalProtocolAddress(jid)
		if (bundle) {
			await dev.repo.injectE2ESession({ jid, session: toSession(bundle) })
		} else {
			const { [addr]: sess } = await dev.keys.get('session', [addr])
			if (!sess) throw Object.assign(new Error('no session and no bundle'), { needBundle: true })
		}
		const enc = () => dev.repo.encryptMessage({ jid, data })
		return pkg === 'baileys7' ? dev.encMutex.mutex(jid, enc) : enc()
	}
	const txn = () => (pkg === 'baileys7' ? dev.keys.transaction(work, meId) : dev.keys.transaction(work))
	if (variant === 'locked') return dev.addrMutex.mutex(jid, txn)
	return txn()
}

function toSession(w) {
	const pub = (s, what) => B.generateSignalPubKey(unb64(s, what))
	const session = {
		registrationId: w.reg,
		identityKey: pub(w.identity, 'bundle.identity'),
		signedPreKey: { keyId: w.spk_id, publicKey: pub(w.spk, 'bundle.spk'), signature: unb64(w.sig, 'bundle.sig') },
	}
	if (w.pk_id != null) session.preKey = { keyId: w.pk_id, publicKey: pub(w.pk, 'bundle.pk') }
	return session
}

const tasks = new Map() // name -> state

function startTask(name, fn) {
	if (tasks.has(name)) throw new Error(`task ${name} already exists`)
	const t = { name, logged: [] }
	tasks.set(name, t)
	tasksALS.run(t, () => {
		Promise.resolve().then(fn).then((res) => {
			tasks.delete(name)
			events.push({ task: name, done: true, ok: true, ...res })
		}, (err) => {
			tasks.delete(name)
			const ev = { task: name, done: true, ok: false, class: classify(err, t.logged), err: String(err && err.message || err).split('\n')[0] }
			if (err && err.needBundle) ev.need_bundle = true
			events.push(ev)
		})
	})
}

// settle waits until nothing but parked tasks remain: no file I/O in flight
// and the event loop turned twice with none.
async function settle() {
	let quietTurns = 0
	while (quietTurns < 2) {
		await new Promise((r) => setImmediate(r))
		// File I/O shows as FSReqPromise, FSReqCallback, CloseReq or a FileHandle.
		const busy = process.getActiveResourcesInfo().some((n) => /Req|FileHandle/.test(n))
		quietTurns = busy ? 0 : quietTurns + 1
	}
}

// ---- requests --------------------------------------------------------------

async function handle(req) {
	switch (req.op) {
	case 'provision': {
		if (dev) throw new Error('already provisioned')
		await open()
		dev.creds.me = { id: meId, name: 'badmac' }
		const prekeys = await genPreKeys(Number.isInteger(req.prekeys) ? req.prekeys : 50)
		return { creds: credsView(dev.creds), prekeys }
	}
	case 'load': // a restart after a crash: the state on disk
		if (dev) throw new Error('already loaded')
		if (req.variant !== undefined) {
			if (!VARIANTS.includes(req.variant)) throw new Error(`unknown variant ${JSON.stringify(req.variant)}`)
			variant = req.variant
		}
		if (req.seed !== undefined) { seed = BigInt(req.seed); rngCounter = 0n }
		await open()
		return { creds: credsView(dev.creds) }
	case 'restart': // a clean restart: parked tasks are abandoned, caches dropped
		parked.clear(); tasks.clear()
		await open()
		return { creds: credsView(dev.creds) }
	case 'reset': { // a new schedule in the same process (Baileys' import is slow)
		if (!VARIANTS.includes(req.variant)) throw new Error(`unknown variant ${JSON.stringify(req.variant)} (known: ${VARIANTS.join(', ')})`)
		if (typeof req.dir !== 'string' || !req.dir) throw new Error('reset: dir is required')
		if (!/^[0-9]+$/.test(req.seed || '')) throw new Error('reset: seed must be a decimal string')
		parked.clear(); tasks.clear(); events = []
		dev = null; writes = 0; gateSeq = 0
		variant = req.variant; args.dir = req.dir; seed = BigInt(req.seed); rngCounter = 0n
		return {}
	}
	case 'prekey': { // a retry receipt's fresh one-time prekey
		need()
		const [pk] = await genPreKeys(1)
		return { creds: credsView(dev.creds), prekey: pk }
	}
	case 'state':
		need()
		return { creds: credsView(dev.creds), writes, parked: [...parked.keys()], tasks: [...tasks.keys()].sort() }
	case 'decrypt':
		need()
		// The protocol's pt is the message without WhatsApp's padding:
		// Baileys unpads after decrypting (decode-wa-message), pads before
		// encrypting (encodeWAMessage).
		startTask(req.task, async () => ({ pt: b64(B.unpadRandomMax16(await receive(req))) }))
		await settle()
		return {}
	case 'encrypt':
		need()
		startTask(req.task, async () => {
			const { type, ciphertext } = await send(req)
			return { kind: type, ct: b64(ciphertext) }
		})
		await settle()
		return {}
	case 'step': {
		need()
		const g = parked.get(req.gate)
		if (!g) throw new Error(`no parked gate ${JSON.stringify(req.gate)}`)
		parked.delete(req.gate)
		g.release()
		await settle()
		return {}
	}
	case 'tear': {
		// A crash in the middle of the parked write: writeFile has truncated
		// the file and written a prefix (in-place writes, no temp+rename).
		// The adapter writes that prefix of what Baileys would have written
		// and dies; the harness restarts it with 'load'.
		// Without a gate: a crash inside the saveCreds that any creds.update
		// triggers (Baileys saves creds on every prekey upload).
		need()
		if (req.gate !== undefined) {
			const g = parked.get(req.gate)
			if (!g || g.call !== 'save creds') throw new Error(`gate ${JSON.stringify(req.gate)} is not a parked creds save`)
		}
		const full = JSON.stringify(dev.creds, B.BufferJSON.replacer)
		const n = Math.max(0, Math.min(full.length, Math.floor(full.length * (req.fraction ?? 0.5))))
		await writeFile(join(args.dir, 'creds.json'), full.slice(0, n))
		process.kill(process.pid, 'SIGKILL')
		return {}
	}
	}
	throw new Error(`unknown op ${JSON.stringify(req.op)}`)
}

function need() {
	if (!dev) throw new Error('not provisioned (provision or load first)')
}

serve({ hello: PROTOCOL, device: `baileys@${args.baileys}`, variant }, handle, () => { const evs = events; events = []; return evs })
