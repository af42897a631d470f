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

// GATED are the scenarios badmac's default gate holds for the socket
// device's rows (cmd/badmac/device.go socketGateScenarios; docs/baileys.md
// "The gate"): where Baileys' own store loses nothing, so a row that
// loses anything fails badmac's gate, whatever the store-blamed count.
export const GATED = ['burst']

/**
 * checkAuthState runs badmac on an auth state and throws an Error with the
 * diagnosis when badmac's gate fails (a gated row printed FAIL: exit 1),
 * when badmac did not run every scenario asked on every store (exit 2, a
 * Node error, a skipped pair; only torn on a store that writes no files is
 * skipped by design), or when the store does worse than Baileys' own
 * useMultiFileAuthState under the same schedule (store blamed),
 * regenerates its credentials, loses prekeys or errs in any row.
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
	const scenarios = opts.scenarios || SCENARIOS
	const args = ['run', '-device', `baileys-socket@${version}`, '-auth', spec,
		'-scenarios', scenarios.join(','), '-schedules', String(opts.schedules ?? 8),
		'-seed', String(opts.seed ?? 1), '-out', join(dir, 'badmac-failures'), '-json']
	// badmac's own gate judges the gated rows (its exit code); a run of
	// none of them has no gate to earn.
	if (!scenarios.some((s) => GATED.includes(s))) args.push('-must-pass', 'none')
	const name = spec.replace(/#([^#]*)$/, ':$1')
	const stores = opts.cache === false ? [name] : [name, `${name}+cache`]
	if (opts.cache === false) args.push('-stores', name)
	const env = { ...process.env, BADMAC_BAILEYS_ADAPTER: process.env.BADMAC_BAILEYS_ADAPTER || here, BADMAC_SELF: 'npx badmac-baileys' }
	const { code, stdout, stderr } = await run(bin, args, env)
	const cmd = `(badmac ${args.join(' ')})`
	const fail = (lines, exitCode, report) => {
		const err = new Error([...lines, cmd].join('\n'))
		err.exitCode = exitCode
		if (report) err.report = report
		return err
	}
	let report = null
	try {
		report = JSON.parse(stdout)
	} catch { /* below */ }
	if ((code !== 0 && code !== 1) || !report?.rows) {
		throw fail([`checkAuthState: badmac ran no verdict: exit ${code}`, ...stderr.trim().split('\n').filter(Boolean)], 2)
	}
	// Every scenario asked, on every store, ran: a pair badmac skipped is
	// no pass (only torn on a store that writes no files, by design).
	const skipped = stderr.split('\n').filter((l) => l.startsWith('skipped: '))
	const missing = []
	for (const st of stores) {
		for (const sc of scenarios) {
			if (report.rows.some((r) => r.store === st && r.scenario === sc && r.schedules > 0)) continue
			const why = skipped.find((l) => l.includes(`/${st}/${sc}:`))
			if (sc === 'torn' && why?.includes('it writes no files')) continue
			missing.push(`  ${st}/${sc}: ${why ? why.slice('skipped: '.length) : 'no schedule ran'}`)
		}
	}
	if (missing.length) throw fail([`checkAuthState: badmac did not run ${missing.length} of the pairs asked:`, ...missing], 2, report)
	const lines = []
	if (code === 1 || report.gate === 'fail') {
		const failed = report.rows.filter((r) => r.must_pass && (r.failed_schedules > 0 || r.blamed > 0))
		lines.push(`checkAuthState: badmac's gate failed (exit ${code}): FAIL: ${failed.map((r) => `${r.discipline}/${r.store}/${r.scenario}`).join(', ')}`)
		for (const r of failed) {
			lines.push(`  ${r.discipline}/${r.store}/${r.scenario}: ${r.blamed} of ${r.messages} messages worse than in Baileys' own serial run`)
			if (r.summary) lines.push(`    ${r.summary}`)
			if (r.replay) lines.push(`    replay: ${r.replay}`)
		}
	}
	const bad = report.rows.filter((r) => (r.store_blamed ?? 0) > 0 || r.regenerated_creds > 0 || r.lost_prekeys > 0 || r.store_error > 0)
	if (bad.length) {
		lines.push(`checkAuthState: ${spec} did worse than Baileys' own useMultiFileAuthState on the same schedules (${bad.length} of ${report.rows.length} rows):`)
		for (const r of bad) {
			const what = []
			if (r.store_blamed) what.push(`${r.store_blamed} of ${r.messages} messages worse than on Baileys' own store`)
			if (r.regenerated_creds) what.push(`credentials regenerated in ${r.regenerated_creds} schedules`)
			if (r.lost_prekeys) what.push(`${r.lost_prekeys} one-time prekeys lost`)
			if (r.store_error) what.push(`${r.store_error} store errors`)
			lines.push(`  ${r.discipline}/${r.store}/${r.scenario}: ${what.join(', ')}`)
			if (r.summary) lines.push(`    ${r.summary}`)
			if (r.replay) lines.push(`    replay: ${r.replay}`)
		}
	}
	if (lines.length) throw fail(lines, 1, report)
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

