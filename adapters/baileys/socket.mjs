#!/usr/bin/env node
// badmac device: Baileys itself. Baileys' own makeWASocket, on the auth
// state a bot author wrote (or Baileys' useMultiFileAuthState), connected
// over a loopback WebSocket to badmac's fake WhatsApp web server
// (fakeserver/waweb): the receive path, decryption, retry receipts, prekey
// upload, LID lookups and the event loop are Baileys' own code. The harness
// (devices/baileys, SocketDevice) decides every interleaving through
// gates (lib/gates.mjs), delivers the server's frames one at a time, and
// moves a virtual clock (lib/det.mjs). docs/baileys.md describes it; the
// requests are JSON lines, docs/device-protocol.md "The socket device".
//
// usage: node socket.mjs --baileys 6.17.16|7.0.0-rc14|MODULE
import './lib/det.mjs' // first: the clock and randomness are patched before Baileys loads
import { die, serve } from './lib/lines.mjs'
import { b64, classify, credsView, strip } from './lib/signal.mjs'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { resolve as resolvePath, join } from 'node:path'
import { mkdir } from 'node:fs/promises'
import { advance, nextDue, reseed, resetClock, virtualNow } from './lib/det.mjs'
import { als, filesWritten, keepForCrash, note, parked, pendingWrites, pushEvent, quiet, resetGates, runIn, setAuto, setReference, setPads, commitAtCrash, isReference, storeCall, takeEvents, Task, track } from './lib/gates.mjs'

const require = createRequire(import.meta.url)
const PROTOCOL = 'badmac device v1'
const PINNED = { '6.17.16': 'baileys6', '7.0.0-rc14': 'baileys7' }


const args = {}
for (let i = 2; i < process.argv.length; i += 2) {
	const k = process.argv[i]
	if (!k.startsWith('--') || i + 1 >= process.argv.length) die(`bad argument ${JSON.stringify(k)}`)
	args[k.slice(2)] = process.argv[i + 1]
}
const spec = args.baileys || 'baileys'

// ---- stdout is the protocol channel ---------------------------------------

// libsignal-node reports the per-session errors of a failed decrypt with
// console.error, then throws "No matching sessions found for message"; the
// task's lines are kept to tell a Bad MAC from an old counter.
const quietFn = () => {}
console.log = console.info = console.debug = console.warn = quietFn
console.error = (...a) => {
	const t = als.getStore()?.task
	if (t) (t.logged ||= []).push(a.map(String).join(' '))
}
const dbg = process.env.BADMAC_DEBUG ? (...a) => process.stderr.write(`debug: ${a.join(' ')}\n`) : () => {}

// ---- Baileys ---------------------------------------------------------------

const modName = PINNED[spec] || spec
let B
const load = (name) => import(name).then((m) => (m.makeWASocket ? m : m.default))
let aliased = false
try {
	B = await load(modName)
	aliased = !!PINNED[spec]
} catch (e) {
	// A pinned version outside badmac's checkout (a replay from a bot's
	// repository): the bot's own Baileys, if it is that version.
	const own = PINNED[spec] ? await load('baileys').catch(() => null) : null
	if (!own || (() => { try { return require('baileys/package.json').version !== spec } catch { return true } })()) {
		die(`cannot load Baileys (${modName}): ${e.message}`)
	}
	B = own
}
if (aliased) {
	// The user's auth module imports 'baileys': give it the pinned copy.
	const { register } = await import('node:module')
	register('./lib/alias-hook.mjs', import.meta.url, { data: { alias: modName, parentURL: import.meta.url } })
	const Module = require('node:module')
	const resolveFilename = Module._resolveFilename
	Module._resolveFilename = function (request, ...rest) {
		const m = /^(?:baileys|@whiskeysockets\/baileys)(\/.*)?$/.exec(request)
		if (m) return require.resolve(modName + (m[1] || ''))
		return resolveFilename.call(this, request, ...rest)
	}
}
const makeWASocket = B.makeWASocket || B.default
if (typeof makeWASocket !== 'function') die(`${modName} exports no makeWASocket`)
const version = (() => {
	try {
		return require(`${modName}/package.json`).version
	} catch {
		return spec
	}
})()
const major = Number(version.split('.')[0])
const logger = { level: 'silent', trace: quietFn, debug: quietFn, info: quietFn, warn: quietFn, error: quietFn, fatal: quietFn }
logger.child = () => logger

// ---- state of one schedule ---------------------------------------------------

let cfg = null // { dir, auth, cache, serial }
let dev = null // the running socket: { sock, state, conn }
const authFns = new Map()
const sentMsgs = new Map() // reply id -> message (getMessage, for retry resends)
const failures = new Map() // message id -> { class, err } of its last failed decrypt

const tasks = {
	login: null,
	server: null,
}
let names = [] // the harness's names for the message stanzas to come, in order
let credSaves = 0

function named(name) {
	return new Task(name)
}

async function loadAuth(specStr) {
	if (!specStr) return B.useMultiFileAuthState
	if (authFns.has(specStr)) return authFns.get(specStr)
	const i = specStr.lastIndexOf('#')
	if (i <= 0) throw new Error(`-auth ${JSON.stringify(specStr)}: want MODULE#FUNCTION`)
	const file = specStr.slice(0, i)
	const fn = specStr.slice(i + 1)
	const url = /^[a-z]+:/.test(file) ? file : pathToFileURL(resolvePath(file)).href
	const mod = await import(url)
	const f = mod[fn] ?? mod.default?.[fn]
	if (typeof f !== 'function') throw new Error(`-auth ${specStr}: ${file} exports no function ${fn}`)
	authFns.set(specStr, f)
	return f
}

// gatedKeys wraps the auth state's key store: every get and set is a
// store call the harness releases.
function gatedKeys(keys) {
	const desc = (data) => {
		const parts = []
		for (const type of Object.keys(data).sort()) {
			for (const id of Object.keys(data[type] || {}).sort()) parts.push(`${type} ${id}${data[type][id] ? '' : ' (delete)'}`)
		}
		return parts.join(', ')
	}
	return {
		get: (type, ids) => storeCall(`get ${type} ${ids.join(',')}`, () => keys.get(type, ids)),
		set: (data) => {
			// The reference store takes the data as it is at the call (a
			// store that writes it out before returning); Baileys 6 hands
			// its live transaction mutations, which later sets change.
			if (isReference()) {
				const c = {}
				for (const type in data) c[type] = { ...data[type] }
				data = c
			}
			return storeCall(`set ${desc(data)}`, () => keys.set(data))
		},
		...(keys.clear ? { clear: () => storeCall('clear', () => keys.clear()) } : {}),
	}
}




// The signal repository is Baileys' own; the wrapper only notes why a
// decrypt failed, for the attempt Baileys reports as a CIPHERTEXT stub.
function wrapRepository(make) {
	return (...a) => {
		const repo = make(...a)
		const dec = repo.decryptMessage.bind(repo)
		repo.decryptMessage = async (opts) => {
			const t = als.getStore()?.task
			if (t) t.logged = []
			try {
				return await dec(opts)
			} catch (e) {
				if (t?.msgId) failures.set(t.msgId, { class: classify(e, t.logged), err: String(e?.message || e).split('\n')[0] })
				throw e
			}
		}
		return repo
	}
}

// ---- the connection ----------------------------------------------------------

// conn is one WebSocket: the frames the server sent (held until the
// harness lets Baileys read them, one at a time), the frames Baileys sent,
// and the writes still on their way to the kernel.
function newConn() {
	return { inbox: [], recv: 0, handled: 0, sent: 0, sending: 0, open: false, closed: false, waiters: [] }
}

function instrument(sock, conn) {
	const ws = sock.ws
	const emit = ws.emit.bind(ws)
	const ctxOf = new WeakMap()
	ws.emit = (ev, ...a) => {
		dbg('emit', ev)
		if (ev === 'message') {
			conn.inbox.push(a)
			conn.recv++
			for (const w of conn.waiters.splice(0)) w()
			return true
		}
		if (ev === 'close') conn.closed = true
		const node = a[0]
		if (typeof ev === 'string' && ev.startsWith('CB:') && node && typeof node === 'object' && node.tag) {
			let t = ctxOf.get(node)
			if (!t) {
				t = taskFor(node)
				ctxOf.set(node, t)
			}
			return runIn(t, () => emit(ev, ...a))
		}
		return emit(ev, ...a)
	}
	// Baileys sends through a promisified WebSocketClient.send bound at
	// creation; the underlying ws socket's send is where every frame goes.
	const raw = ws.socket
	if (!raw) throw new Error('the WebSocketClient has no socket after makeWASocket')
	const send = raw.send.bind(raw)
	raw.send = (data, opts, cb) => {
		if (typeof opts === 'function') { cb = opts; opts = undefined }
		conn.sent++
		conn.sending++
		return send(data, opts || {}, (err) => {
			conn.sending--
			if (cb) cb(err)
		})
	}
}

// taskFor names the context a stanza's handling runs in: a message is a
// receive named as the harness named the copy; a retry receipt is the
// resend it asks for; anything else is the server's.
function taskFor(node) {
	const id = node.attrs?.id || ''
	if (node.tag === 'message') {
		const t = named(names.length ? names.shift() : id)
		t.msgId = id
		return t
	}
	if (node.tag === 'receipt' && node.attrs?.type === 'retry') {
		const retry = Array.isArray(node.content) ? node.content.find((c) => c.tag === 'retry') : null
		return named(`${id}~retry${retry?.attrs?.count || ''}`)
	}
	if (node.tag === 'success') return tasks.login
	return tasks.server
}

function waitRecv(conn, n) {
	if (conn.recv >= n || conn.closed) return Promise.resolve()
	return new Promise((res) => conn.waiters.push(res)).then(() => waitRecv(conn, n))
}

// settle is quiet plus the socket's writes: a frame Baileys is writing
// is on its way once the kernel has it.
const settle = () => quiet(() => (dev?.conn?.sending || 0) > 0)

// ---- requests ------------------------------------------------------------------

async function openDevice(req) {
	if (!cfg) throw new Error('reset first')
	if (dev) throw new Error('already open')
	await mkdir(cfg.dir, { recursive: true })
	setAuto(cfg.serial || !!req.on)
	tasks.login = named('login')
	tasks.server = named('server')
	const fn = await loadAuth(cfg.auth)
	dbg('auth fn loaded')
	let got
	try {
		got = await runIn(tasks.login, () => fn(cfg.dir))
	} catch (e) {
		return { refused: String(e?.message || e).split('\n')[0] || 'threw' }
	}
	dbg('auth state made')
	const state = got?.state
	if (!state?.creds || !state?.keys || typeof got.saveCreds !== 'function') {
		throw new Error(`the auth function returned ${Object.keys(got || {}).join(', ') || 'nothing'}; want { state: { creds, keys }, saveCreds }`)
	}
	const keys = gatedKeys(state.keys)
	const saveCreds = () => storeCall('save creds', () => got.saveCreds())
	const fresh = !state.creds.me
	if (fresh) {
		// A device linked without pairing (the server checks no
		// signature): its JID and a placeholder ADV identity, saved.
		state.creds.me = { id: req.jid, name: 'badmac' }
		state.creds.account = {
			details: Buffer.from('badmac'), accountSignatureKey: Buffer.alloc(32, 1),
			accountSignature: Buffer.alloc(64, 2), deviceSignature: Buffer.alloc(64, 3),
		}
		state.creds.registered = true
		// The app-state key id the phone shares after pairing: without
		// one Baileys 6 holds every event until it comes (Socket/chats.js,
		// receivedPendingNotifications).
		state.creds.myAppStateKeyId = 'AAAAAAAA'
		setAuto(true) // before the socket exists: nothing else runs
		await runIn(tasks.login, saveCreds)
		dbg('creds saved')
		setAuto(cfg.serial || !!req.on)
		if (!req.provision) note('no credentials found: new ones were made (the store lost or could not read them)')
	}
	if (B.WA_CERT_DETAILS && req.root) B.WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(req.root, 'base64')
	const auth = { creds: state.creds, keys: cfg.cache ? B.makeCacheableSignalKeyStore(keys, logger) : keys }
	const conn = newConn()
	const defaults = B.DEFAULT_CONNECTION_CONFIG || {}
	const sock = runIn(tasks.login, () => makeWASocket({
		waWebSocketUrl: req.url,
		auth,
		logger,
		markOnlineOnConnect: false,
		fireInitQueries: false,
		syncFullHistory: false,
		getMessage: async (key) => sentMsgs.get(key.id),
		makeSignalRepository: wrapRepository(defaults.makeSignalRepository),
	}))
	instrument(sock, conn)
	dev = { sock, state, got, conn }
	// The bot's sock.ev.on('creds.update', saveCreds): Baileys does not
	// wait for it, so each save is a task of its own, named for the task
	// whose update started it.
	sock.ev.on('creds.update', () => {
		const t = named(`${als.getStore()?.task?.name || 'device'}~creds${++credSaves}`)
		runIn(t, () => saveCreds().catch((e) => note(`saveCreds failed: ${e?.message || e}`)))
	})
	sock.ev.on('connection.update', (u) => {
		if (u.connection === 'open') conn.open = true
		if (u.connection === 'close') {
			conn.open = false
			conn.closed = true
			for (const w of conn.waiters.splice(0)) w()
		}
	})
	sock.ev.on('messages.upsert', ({ messages }) => {
		for (const m of messages) {
			const k = m.key || {}
			if (k.fromMe || !k.id) continue
			const text = m.message?.conversation ?? m.message?.extendedTextMessage?.text
			if (text != null) {
				pushEvent({ task: als.getStore()?.task?.name || 'device', attempt: k.id, ok: true, pt: b64(Buffer.from(text)) })
				failures.delete(k.id)
			} else if (m.messageStubType === 2 /* CIPHERTEXT */) {
				const f = failures.get(k.id) || { class: 'Other', err: String(m.messageStubParameters?.[0] || 'not decrypted') }
				failures.delete(k.id)
				pushEvent({ task: als.getStore()?.task?.name || 'device', attempt: k.id, ok: false, class: f.class, err: f.err })
			}
		}
	})
	dbg('socket made')
	// The socket is open once Baileys has sent its hello.
	await new Promise((res) => {
		const check = () => (conn.sent > 0 || conn.closed ? res() : setImmediate(check))
		check()
	})
	await settle()
	return { creds: credsView(state.creds), fresh }
}

function status() {
	const c = dev?.conn
	const due = nextDue()
	return { sent: c?.sent || 0, recv: c?.recv || 0, timer: due < 0 ? -1 : due - virtualNow(), now: virtualNow() - 1767225600000, open: !!c?.open, writes: filesWritten() }
}

async function frames(req) {
	const conn = dev?.conn
	if (!conn) throw new Error('not open')
	names.push(...(req.names || []))
	while (conn.handled < req.upto) {
		await waitRecv(conn, conn.handled + 1)
		if (!conn.inbox.length) break // closed
		const a = conn.inbox.shift()
		conn.handled++
		dev.sock.ws.listeners('message').forEach((l) => l(...a))
		await settle()
	}
}

async function handle(req) {
	switch (req.op) {
	case 'reset': {
		if (typeof req.dir !== 'string' || !req.dir) throw new Error('reset: dir is required')
		if (!/^[0-9]+$/.test(req.seed || '')) throw new Error('reset: seed must be a decimal string')
		await teardown()
		resetGates()
		resetClock()
		reseed(req.seed)
		sentMsgs.clear()
		failures.clear()
		names = []
		credSaves = 0
		cfg = { dir: req.dir, auth: req.auth || '', cache: !!req.cache, serial: !!req.serial }
		setAuto(cfg.serial)
		setReference(!!req.reference)
		return {}
	}
	case 'open':
		if (req.seed) reseed(req.seed)
		setPads(req.pads)
		return openDevice(req)
	case 'auto': // provisioning done: the store calls wait for steps again
		setAuto(cfg.serial || !!req.on)
		return {}
	case 'frames':
		await frames(req)
		return {}
	case 'step': {
		const g = parked.get(req.gate)
		if (!g) throw new Error(`no parked gate ${JSON.stringify(req.gate)}`)
		dbg('step', g.task, g.call)
		g.release()
		await settle()
		return {}
	}
	case 'reply': {
		if (!dev) throw new Error('not open')
		const t = named(req.task)
		runIn(t, async () => {
			try {
				const m = await dev.sock.sendMessage(req.jid, { text: req.text }, { messageId: req.msgid })
				if (m?.message) sentMsgs.set(req.msgid, m.message)
				pushEvent({ task: t.name, done: true, ok: true, sent: true })
			} catch (e) {
				pushEvent({ task: t.name, done: true, ok: false, class: 'Other', err: String(e?.message || e).split('\n')[0] })
			}
		})
		await settle()
		return {}
	}
	case 'tick':
		advance(Number(req.to) + 1767225600000)
		await settle()
		return {}
	case 'keep': // a kill's first half (keepForCrash); crash follows
		return { parked: await keepForCrash(req.modes || '', settle) }
	case 'crash': {
		// A kill: each parked write in order is kept (k: done in full),
		// torn (g: a prefix of it written) or dropped (d), then SIGKILL.
		// A reference run first completes the calls the candidate's crash
		// completed (commitAtCrash); its own writes are never parked.
		await commitAtCrash(req.commit)
		const modes = req.modes || ''
		pendingWrites().forEach((g, i) => {
			const m = modes[i] || 'd'
			if (m === 'k') g.sync?.()
			if (m === 'g') (g.tear ? g.tear(0.5) : g.sync?.())
		})
		process.kill(process.pid, 'SIGKILL')
		return {}
	}
	case 'stop': {
		// A clean shutdown (a deploy's SIGTERM): the socket ends, the
		// store's close runs if it has one.
		if (!dev) return {}
		await teardown(true)
		await settle()
		return {}
	}
	case 'state':
		return { creds: dev ? credsView(dev.state.creds) : undefined, parked: [...parked.keys()] }
	}
	throw new Error(`unknown op ${JSON.stringify(req.op)}`)
}

async function teardown(clean) {
	if (!dev) return
	const d = dev
	dev = null
	try {
		if (!d.conn.closed) {
			const closed = new Promise((res) => d.sock.ev.on('connection.update', (u) => u.connection === 'close' && res()))
			d.sock.end(undefined)
			if (clean) await closed
		}
	} catch { /* a socket that failed to end is dropped */ }
	if (clean && typeof d.got.close === 'function') await track(d.got.close())
}

serve({ hello: PROTOCOL, device: `baileys-socket@${version}` }, handle, takeEvents, status)
