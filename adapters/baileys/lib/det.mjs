// Determinism for a Node device: seeded randomness and a virtual clock
// (docs/baileys.md, "Determinism").
//
// Randomness: libsignal-node and Baileys draw key material, message ids and
// padding from crypto.randomBytes, crypto.generateKeyPairSync('x25519')
// (libsignal-node 6.0.0 src/curve.js generateKeyPair), webcrypto's
// getRandomValues and Math.random. Each is replaced by a stream derived
// from the schedule's seed (SHA-256 in counter mode), so a run's bytes, ids
// and keys repeat. syncBuiltinESMExports carries the patch to named ESM
// imports (Baileys 7 imports { randomBytes } from 'crypto').
//
// Time: Date.now, new Date(), setTimeout, setInterval (and their clears)
// run on a virtual clock that moves only when the harness says so (tick):
// Baileys' retry delays, NodeCache's TTLs (makeCacheableSignalKeyStore's
// five minutes), the keepalive and query timeouts fire at the virtual
// instants a schedule reaches, never by the wall clock. setImmediate and
// process.nextTick stay real: they are how the adapter waits for quiet.
import { createRequire, syncBuiltinESMExports } from 'node:module'
import { AsyncResource } from 'node:async_hooks'

const require = createRequire(import.meta.url)
const nodeCrypto = require('node:crypto')
const realCreateHash = nodeCrypto.createHash
const realCreatePrivateKey = nodeCrypto.createPrivateKey
const realCreatePublicKey = nodeCrypto.createPublicKey
const realGenerateKeyPairSync = nodeCrypto.generateKeyPairSync

let seed = 0n
let counter = 0n

// reseed restarts the random stream (a new schedule, or a process restarted
// after a crash: the harness passes a seed per incarnation).
export function reseed(s) {
	seed = BigInt(s)
	counter = 0n
}

export function randomBytes(n, cb) {
	const buf = Buffer.alloc(n)
	for (let off = 0; off < n; off += 32) {
		const h = realCreateHash('sha256').update(`badmac:${seed}:${counter++}`).digest()
		h.copy(buf, off, 0, Math.min(32, n - off))
	}
	if (typeof cb === 'function') {
		process.nextTick(cb, null, buf)
		return
	}
	return buf
}

const PKCS8_X25519 = Buffer.from([48, 46, 2, 1, 0, 48, 5, 6, 3, 43, 101, 110, 4, 34, 4, 32])

function generateKeyPairSync(type, opts) {
	if (type !== 'x25519') return realGenerateKeyPairSync(type, opts)
	const priv = realCreatePrivateKey({ key: Buffer.concat([PKCS8_X25519, randomBytes(32)]), format: 'der', type: 'pkcs8' })
	const pub = realCreatePublicKey(priv)
	const enc = (k, e) => (e ? k.export(e) : k)
	return { privateKey: enc(priv, opts?.privateKeyEncoding), publicKey: enc(pub, opts?.publicKeyEncoding) }
}

nodeCrypto.randomBytes = randomBytes
nodeCrypto.generateKeyPairSync = generateKeyPairSync
nodeCrypto.randomFillSync = (buf, off = 0, size) => {
	const b = randomBytes(size ?? buf.length - off)
	Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).set(b, off)
	return buf
}
nodeCrypto.randomUUID = () => {
	const b = randomBytes(16)
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	const h = b.toString('hex')
	return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}
if (globalThis.crypto?.getRandomValues) {
	const fill = (arr) => {
		const b = randomBytes(arr.byteLength)
		new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength).set(b)
		return arr
	}
	try {
		Object.defineProperty(globalThis.crypto, 'getRandomValues', { value: fill, configurable: true, writable: true })
	} catch { /* a frozen webcrypto: nothing in Baileys' send and receive paths uses it */ }
}
Math.random = () => randomBytes(6).readUIntBE(0, 6) / 2 ** 48
syncBuiltinESMExports()

// ---- the virtual clock ------------------------------------------------------

// 2026-01-01T00:00:00Z: a fixed start, so message timestamps repeat.
export const EPOCH = 1767225600000
let now = EPOCH
let timerSeq = 0
const timers = new Map() // id -> { id, due, ms, cb, args, repeat, res, seq }

class VirtualTimeout {
	constructor(t) { this._t = t }
	ref() { return this }
	unref() { return this }
	hasRef() { return true }
	refresh() {
		if (timers.has(this._t.id)) this._t.due = now + this._t.ms
		return this
	}
	close() { timers.delete(this._t.id); return this }
	[Symbol.toPrimitive]() { return this._t.id }
}

function addTimer(cb, ms, args, repeat) {
	if (typeof cb !== 'function') throw new TypeError('callback must be a function')
	ms = Math.max(1, Math.floor(Number(ms) || 0))
	const t = { id: ++timerSeq, due: now + ms, ms, cb, args, repeat, res: new AsyncResource('VirtualTimeout') }
	timers.set(t.id, t)
	return new VirtualTimeout(t)
}

function clear(h) {
	if (h == null) return
	const id = typeof h === 'object' ? h._t?.id : Number(h)
	const t = timers.get(id)
	if (t) {
		timers.delete(id)
		t.res.emitDestroy()
	}
}

export const real = {
	setTimeout: globalThis.setTimeout,
	clearTimeout: globalThis.clearTimeout,
	setImmediate: globalThis.setImmediate,
	Date: globalThis.Date,
}

globalThis.setTimeout = (cb, ms, ...args) => addTimer(cb, ms, args, false)
globalThis.setInterval = (cb, ms, ...args) => addTimer(cb, ms, args, true)
globalThis.clearTimeout = clear
globalThis.clearInterval = clear
{
	const timersMod = require('node:timers')
	timersMod.setTimeout = globalThis.setTimeout
	timersMod.setInterval = globalThis.setInterval
	timersMod.clearTimeout = clear
	timersMod.clearInterval = clear
}

const RealDate = real.Date
class VirtualDate extends RealDate {
	constructor(...a) {
		if (a.length === 0) super(now)
		else super(...a)
	}
	static now() { return now }
}
VirtualDate.parse = RealDate.parse
VirtualDate.UTC = RealDate.UTC
globalThis.Date = VirtualDate
syncBuiltinESMExports()

// resetClock starts a new schedule's time: every pending timer dropped.
export function resetClock() {
	for (const t of timers.values()) t.res.emitDestroy()
	timers.clear()
	now = EPOCH
}

export function virtualNow() { return now }

// nextDue is the virtual instant of the earliest pending timer, or -1.
export function nextDue() {
	let best = -1
	for (const t of timers.values()) if (best < 0 || t.due < best) best = t.due
	return best
}

// advance moves the clock to min(to, the earliest due timer) and fires
// every timer due at that instant, in the order they were set; a timer a
// callback sets for the same instant waits for the next advance. It
// returns the instant reached.
export function advance(to) {
	const due = nextDue()
	if (due < 0 || due > to) {
		if (to > now) now = to
		return now
	}
	if (due > now) now = due
	const fire = [...timers.values()].filter((t) => t.due <= now).sort((a, b) => a.due - b.due || a.id - b.id)
	for (const t of fire) {
		if (!timers.has(t.id)) continue // cleared by an earlier callback
		if (t.repeat) t.due = now + t.ms
		else timers.delete(t.id)
		try {
			t.res.runInAsyncScope(t.cb, null, ...t.args)
		} catch (e) {
			process.emitWarning(`virtual timer callback threw: ${e?.stack || e}`)
		}
		if (!t.repeat) t.res.emitDestroy()
	}
	return now
}
