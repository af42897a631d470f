#!/usr/bin/env node
// badmac-baileys: badmac from a Baileys bot's repository (docs/baileys.md).
//
//   npx badmac-baileys check ./src/auth.mjs#useMyAuthState   # checkAuthState, from the shell
//   npx badmac-baileys run -auth ./src/auth.mjs#useMyAuthState [badmac run flags]
//   npx badmac-baileys replay badmac-failures/FILE.txt
//
// run, replay and every other badmac command run the badmac binary
// (BADMAC_BIN, on the PATH, or built from a checkout) with this package
// as its Baileys adapter, so the bot's own Baileys is the one tested
// (-device baileys-socket@installed unless -device is given).
import { spawnSync } from 'node:child_process'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { checkAuthState, findBadmac } from '../index.mjs'

const here = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const [cmd, ...rest] = process.argv.slice(2)
if (!cmd || cmd === '-h' || cmd === 'help') {
	process.stdout.write(`usage: badmac-baileys check MODULE#FUNCTION [-dir DIR] [-schedules N]
       badmac-baileys run -auth MODULE#FUNCTION [badmac run flags]
       badmac-baileys replay FILE
       badmac-baileys COMMAND ... (any badmac command)
`)
	process.exit(cmd ? 0 : 2)
}
if (cmd === 'check') {
	const spec = rest[0]
	const opt = {}
	for (let i = 1; i < rest.length; i += 2) {
		if (rest[i] === '-dir') opt.dir = rest[i + 1]
		else if (rest[i] === '-schedules') opt.schedules = Number(rest[i + 1])
		else { process.stderr.write(`badmac-baileys: unknown flag ${rest[i]}\n`); process.exit(2) }
	}
	if (!spec || !spec.includes('#')) { process.stderr.write('badmac-baileys: check wants MODULE#FUNCTION\n'); process.exit(2) }
	const [file, fn] = [spec.slice(0, spec.lastIndexOf('#')), spec.slice(spec.lastIndexOf('#') + 1)]
	try {
		const rep = await checkAuthState(`${resolve(file)}#${fn}`, opt)
		const gate = rep.gate === 'pass' ? `badmac's gate passed (${rep.rows.filter((r) => r.must_pass).length} rows)` : `no gated scenario asked (${rep.gate})`
		process.stdout.write(`PASS: ${spec} did no worse than Baileys' own useMultiFileAuthState in ${rep.rows.length} rows; ${gate}\n`)
		process.exit(0)
	} catch (e) {
		process.stdout.write(`${e.message}\n`)
		process.exit(e.exitCode === 1 ? 1 : 2) // 2: no verdict (bad input, badmac or Node failed, a pair not run)
	}
}
let bin
try {
	bin = findBadmac()
} catch (e) {
	process.stderr.write(`${e.message}\n`)
	process.exit(2)
}
const args = [cmd, ...rest]
if (cmd === 'run' && !rest.includes('-device')) args.push('-device', 'baileys-socket@installed')
const r = spawnSync(bin, args, { stdio: 'inherit', env: { ...process.env, BADMAC_BAILEYS_ADAPTER: process.env.BADMAC_BAILEYS_ADAPTER || here, BADMAC_SELF: 'npx badmac-baileys' } })
process.exit(r.status ?? 2)
