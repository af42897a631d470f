// Example auth states a bot author might write, for badmac's own tests and
// docs/baileys.md: one correct file store and four that ship a real bug (the
// fourth, useNoLIDMappingAuthState, in docs/lid.md §6.6).
// Each is `(dir) => Promise<{ state: { creds, keys }, saveCreds }>`, the
// shape of Baileys' useMultiFileAuthState, and runs on the Baileys the
// bot uses (import 'baileys').
//
//   badmac run -device baileys-socket@7.0.0-rc14 -auth adapters/baileys/examples/files.mjs#useCorrectAuthState
import * as baileys from 'baileys'
import { mkdir, open, readFile, rename, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

const B = baileys.initAuthCreds ? baileys : baileys.default
const { initAuthCreds, BufferJSON, proto } = B

const fileName = (type, id) => `${type}-${String(id).replace(/\//g, '__').replace(/:/g, '-')}.json`

// lock serializes the work on one key, in call order.
function locks() {
	const tails = new Map()
	return (key, fn) => {
		const prev = tails.get(key) || Promise.resolve()
		const run = prev.then(fn, fn)
		const tail = run.catch(() => {})
		tails.set(key, tail)
		tail.then(() => { if (tails.get(key) === tail) tails.delete(key) })
		return run
	}
}

// fileStore is the correct store's parts; each example changes one.
function fileStore(dir) {
	const lock = locks()
	let seq = 0
	// Atomic replace: a temporary file, flushed, renamed over the old one.
	const atomicWrite = async (path, text) => {
		const tmp = `${path}.${++seq}.tmp`
		const fh = await open(tmp, 'w')
		try {
			await fh.writeFile(text)
			await fh.sync()
		} finally {
			await fh.close()
		}
		await rename(tmp, path)
	}
	const read = async (path) => {
		try {
			return JSON.parse(await readFile(path, 'utf8'), BufferJSON.reviver)
		} catch (e) {
			if (e.code === 'ENOENT') return null
			throw e // unreadable: never silently "missing"
		}
	}
	const readKey = async (type, id) => {
		let v = await read(join(dir, fileName(type, id)))
		if (type === 'app-state-sync-key' && v) v = proto.Message.AppStateSyncKeyData.fromObject(v)
		return v
	}
	const writeKey = (type, id, value) => lock(`${type}/${id}`, async () => {
		const path = join(dir, fileName(type, id))
		if (value) await atomicWrite(path, JSON.stringify(value, BufferJSON.replacer))
		else await unlink(path).catch((e) => { if (e.code !== 'ENOENT') throw e })
	})
	const get = async (type, ids) => {
		const out = {}
		await Promise.all(ids.map(async (id) => { out[id] = await readKey(type, id) }))
		return out
	}
	const set = async (data) => {
		const writes = []
		for (const type in data) for (const id in data[type]) writes.push(writeKey(type, id, data[type][id]))
		await Promise.all(writes)
	}
	const loadCreds = async () => {
		// A creds.json that exists but cannot be read refuses to start:
		// new credentials would be a new identity to every contact.
		const c = await read(join(dir, 'creds.json'))
		return c || initAuthCreds()
	}
	const saveCreds = (creds) => lock('creds', () => atomicWrite(join(dir, 'creds.json'), JSON.stringify(creds, BufferJSON.replacer)))
	return { get, set, loadCreds, saveCreds, readKey, writeKey, read }
}

// useCorrectAuthState: one JSON file per key, each write a temporary file
// renamed over the old one, writes to one key in call order, every write
// awaited, credentials saved the same way under a lock; an unreadable file
// is an error, not an empty key.
export async function useCorrectAuthState(dir) {
	await mkdir(dir, { recursive: true })
	const s = fileStore(dir)
	const creds = await s.loadCreds()
	return { state: { creds, keys: { get: s.get, set: s.set } }, saveCreds: () => s.saveCreds(creds) }
}

// useStaleCacheAuthState: the correct store with a read cache of its own
// that set() does not update ("makeCacheableSignalKeyStore already keeps
// keys fresh"). Behind makeCacheableSignalKeyStore, Baileys' cache answers
// every read for five minutes; once an entry expires, this one hands back
// the record it first read.
export async function useStaleCacheAuthState(dir) {
	await mkdir(dir, { recursive: true })
	const s = fileStore(dir)
	const creds = await s.loadCreds()
	const cache = new Map()
	const get = async (type, ids) => {
		const out = {}
		await Promise.all(ids.map(async (id) => {
			const k = `${type}/${id}`
			if (!cache.has(k)) cache.set(k, await s.readKey(type, id))
			out[id] = cache.get(k)
		}))
		return out
	}
	return { state: { creds, keys: { get, set: s.set } }, saveCreds: () => s.saveCreds(creds) }
}

// useNoAwaitAuthState: the correct store whose set() starts its writes and
// returns without awaiting them ("fire and forget is faster"). Baileys
// acknowledges the message once set() returns; a crash before the writes
// land loses the ratchet step.
export async function useNoAwaitAuthState(dir) {
	await mkdir(dir, { recursive: true })
	const s = fileStore(dir)
	const creds = await s.loadCreds()
	const set = async (data) => {
		for (const type in data) for (const id in data[type]) s.writeKey(type, id, data[type][id]).catch(() => {})
	}
	return { state: { creds, keys: { get: s.get, set } }, saveCreds: () => s.saveCreds(creds) }
}

// useUnlockedCredsAuthState: the correct key store; credentials written
// straight over creds.json with no lock, as the first version of many
// stores does, and an unreadable creds.json read as none (as
// useMultiFileAuthState reads it). Two saves at once interleave their
// truncate and write; a kill between them leaves a torn file.
export async function useUnlockedCredsAuthState(dir) {
	await mkdir(dir, { recursive: true })
	const s = fileStore(dir)
	const path = join(dir, 'creds.json')
	let creds
	try {
		creds = JSON.parse(await readFile(path, 'utf8'), BufferJSON.reviver)
	} catch {
		creds = initAuthCreds()
	}
	return { state: { creds, keys: { get: s.get, set: s.set } }, saveCreds: () => writeFile(path, JSON.stringify(creds, BufferJSON.replacer)) }
}

// useSeedFixAuthState: the fix the incident's write-up reached for
// (docs/baileys.md): Baileys' own useMultiFileAuthState with one mutex
// around every keys.get and keys.set, creds saved after every set, no
// cache.
export async function useSeedFixAuthState(dir) {
	const { state, saveCreds } = await B.useMultiFileAuthState(dir)
	const lock = locks()
	const one = (fn) => lock('all', fn)
	const keys = {
		get: (type, ids) => one(() => state.keys.get(type, ids)),
		set: (data) => one(async () => { await state.keys.set(data); await saveCreds() }),
	}
	return { state: { creds: state.creds, keys }, saveCreds }
}

// useNoLIDMappingAuthState: the correct store written against Baileys 6's
// key types, which ignores the keys of a type it does not know: Baileys 7
// keeps each contact's PN↔LID pair as `lid-mapping` keys in the auth state
// (lib/Signal/lid-mapping.js 7.0.0-rc14), and this store drops them (set
// writes nothing, get finds nothing). Baileys' in-memory cache of the pairs
// hides it until a restart; then a PN stanza of a contact whose session
// was migrated to its LID finds no session (Baileys PR #2372's second
// cause, docs/lid.md §3.5).
export async function useNoLIDMappingAuthState(dir) {
	await mkdir(dir, { recursive: true })
	const s = fileStore(dir)
	const creds = await s.loadCreds()
	const get = async (type, ids) => (type === 'lid-mapping' ? {} : s.get(type, ids))
	const set = async (data) => {
		const { 'lid-mapping': _dropped, ...rest } = data
		await s.set(rest)
	}
	return { state: { creds, keys: { get, set } }, saveCreds: () => s.saveCreds(creds) }
}
