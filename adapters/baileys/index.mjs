// badmac-baileys: test a Baileys bot's auth state against Baileys' own
// socket (docs/baileys.md). From a test (node:test, jest, vitest):
//
//   import { checkAuthState } from 'badmac-baileys'
//   import { useMyAuthState } from '../src/auth.mjs'
//   test('auth state', async () => { await checkAuthState(useMyAuthState, { dir: 'badmac-failures' }) })
//
// It runs badmac (the Go binary) on the bot's own Baileys: makeWASocket
// over the auth state, alone and behind makeCacheableSignalKeyStore,
// against a loopback fake WhatsApp server, every store call and write at
// an interleaving badmac chooses, crashes included; and throws when the
// store does worse than Baileys' own useMultiFileAuthState on the same
// schedule (or loses its credentials or prekeys), with the diagnosis and
// the command that replays the failure on the store.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { tmpdir } from 'node:os'
import { Session } from 'node:inspector/promises'

const here = dirname(fileURLToPath(import.meta.url))

// findBadmac finds the badmac binary: $BADMAC_BIN, badmac on the PATH,
// the Go bin directory, or (this package inside a badmac checkout) one
// built from the checkout.
export function findBadmac() {
	if (process.env.BADMAC_BIN) return process.env.BADMAC_BIN
	const onPath = spawnSync(process.platform === 'win32' ? 'where' : 'which', ['badmac'], { encoding: 'utf8' })
	if (onPath.status === 0 && onPath.stdout.trim()) return onPath.stdout.trim().split('\n')[0]
	const gopath = spawnSync('go', ['env', 'GOPATH'], { encoding: 'utf8' })
	if (gopath.status === 0) {
		const bin = join(gopath.stdout.trim(), 'bin', 'badmac')
		if (existsSync(bin)) return bin
	}
	const repo = resolve(here, '..', '..')
	if (existsSync(join(repo, 'cmd', 'badmac')) && existsSync(join(repo, 'go.mod'))) {
		const out = join(tmpdir(), `badmac-baileys-${process.getuid?.() ?? 'u'}`, 'badmac')
		const b = spawnSync('go', ['build', '-o', out, './cmd/badmac'], { cwd: repo, encoding: 'utf8' })
		if (b.status !== 0) throw new Error(`badmac-baileys: building badmac in ${repo} failed:\n${b.stderr}`)
		return out
	}
	throw new Error('badmac-baileys: no badmac binary: set BADMAC_BIN, put badmac on the PATH, or install it with `go install` from a badmac checkout (go install ./cmd/badmac)')
}

// functionModule finds the module that exports fn, through the V8
// inspector's [[FunctionLocation]] of the function (no flag needed).
export async function functionModule(fn) {
	const session = new Session()
	session.connect()
	const urls = new Map()
	session.on('Debugger.scriptParsed', ({ params }) => urls.set(params.scriptId, params.url))
	try {
		await session.post('Debugger.enable')
		globalThis.__badmacProbe = fn
		const { result } = await session.post('Runtime.evaluate', { expression: 'globalThis.__badmacProbe' })
		const { internalProperties } = await session.post('Runtime.getProperties', { objectId: result.objectId, ownProperties: true })
		const loc = internalProperties?.find((p) => p.name === '[[FunctionLocation]]')?.value?.value
		const url = loc && urls.get(loc.scriptId)
		if (!url) return null
		return url.startsWith('file:') ? fileURLToPath(url) : url
	} finally {
		delete globalThis.__badmacProbe
		session.disconnect()
	}
}

// The scenarios the socket device runs (docs/baileys.md).
export const SCENARIOS = ['burst', 'reply', 'reorder', 'crash', 'restart', 'torn', 'idle']

/**
 * checkAuthState runs badmac on an auth state and throws an Error with the
 * diagnosis when the store does worse than Baileys' own useMultiFileAuthState
 * under the same schedule, regenerates its credentials or loses prekeys.
 *
 * @param {Function|string} useAuthState the auth state function (exported by
 *   its module: `(dir) => Promise<{ state, saveCreds }>`), or 'MODULE#FUNCTION'
 * @param {object} [opts]
 * @param {string} [opts.dir] where failing schedules are saved (default: a temp dir)
 * @param {string} [opts.module] the module exporting it (default: found from the function)
 * @param {string[]} [opts.scenarios] default: SCENARIOS
 * @param {number} [opts.schedules] schedules per row (default 8)
 * @param {number} [opts.seed] default 1
 * @param {string} [opts.baileys] 'installed' (the Baileys this project resolves, default), '6.17.16' or '7.0.0-rc14' (badmac's pinned ones, in a checkout)
 * @param {boolean} [opts.cache] also behind makeCacheableSignalKeyStore (default true)
 * @returns {Promise<object>} the report (reports/schema.json)
 */
export async function checkAuthState(useAuthState, opts = {}) {
	let spec = typeof useAuthState === 'string' ? useAuthState : null
	if (!spec) {
		if (typeof useAuthState !== 'function' || !useAuthState.name) throw new TypeError('checkAuthState: want the auth state function (exported by its module) or "MODULE#FUNCTION"')
		const file = opts.module ? resolve(opts.module) : await functionModule(useAuthState)
		if (!file) throw new Error(`checkAuthState: cannot tell which module exports ${useAuthState.name}; pass { module: '<path>' }`)
		const mod = await import(pathToFileURL(file).href)
		if (mod[useAuthState.name] !== useAuthState) throw new Error(`checkAuthState: ${file} does not export ${useAuthState.name} by that name; pass 'MODULE#FUNCTION'`)
		spec = `${file}#${useAuthState.name}`
	}
	const dir = resolve(opts.dir || join(tmpdir(), `badmac-baileys-${process.pid}`))
	mkdirSync(dir, { recursive: true })
	const bin = findBadmac()
	const version = opts.baileys || 'installed'
	const args = ['run', '-device', `baileys-socket@${version}`, '-auth', spec,
		'-scenarios', (opts.scenarios || SCENARIOS).join(','), '-schedules', String(opts.schedules ?? 8),
		'-seed', String(opts.seed ?? 1), '-out', join(dir, 'badmac-failures'), '-must-pass', 'none', '-json']
	if (opts.cache === false) {
		const name = spec.replace(/#([^#]*)$/, ':$1')
		args.push('-stores', name)
	}
	const env = { ...process.env, BADMAC_BAILEYS_ADAPTER: process.env.BADMAC_BAILEYS_ADAPTER || here }
	const { code, stdout, stderr } = await run(bin, args, env)
	if (code !== 0) throw new Error(`badmac ${args.join(' ')}: exit ${code}\n${stderr.trim()}`)
	const report = JSON.parse(stdout)
	const bad = report.rows.filter((r) => (r.store_blamed ?? 0) > 0 || r.regenerated_creds > 0 || r.lost_prekeys > 0 || r.store_error > 0)
	if (bad.length) {
		const lines = [`checkAuthState: ${spec} did worse than Baileys' own useMultiFileAuthState on the same schedules (${bad.length} of ${report.rows.length} rows):`]
		for (const r of bad) {
			const what = []
			if (r.store_blamed) what.push(`${r.store_blamed} of ${r.messages} messages worse than on Baileys' own store`)
			if (r.regenerated_creds) what.push(`credentials regenerated in ${r.regenerated_creds} schedules`)
			if (r.lost_prekeys) what.push(`${r.lost_prekeys} one-time prekeys lost`)
			if (r.store_error) what.push(`${r.store_error} store errors`)
			lines.push(`  ${r.discipline}/${r.store}/${r.scenario}: ${what.join(', ')}`)
			if (r.summary) lines.push(`    ${r.summary}`)
			if (r.replay) lines.push(`    replay: npx badmac-baileys ${r.replay.replace(/^badmac /, '')}`)
		}
		lines.push(`(badmac ${args.join(' ')})`)
		const err = new Error(lines.join('\n'))
		err.report = report
		throw err
	}
	return report
}

function run(bin, args, env) {
	return new Promise((resolveRun, reject) => {
		const p = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
		let stdout = ''
		let stderr = ''
		p.stdout.on('data', (d) => { stdout += d })
		p.stderr.on('data', (d) => { stderr += d })
		p.on('error', reject)
		p.on('close', (code) => resolveRun({ code, stdout, stderr }))
	})
}

