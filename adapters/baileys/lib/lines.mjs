// The device protocol's line loop (docs/device-protocol.md), shared by the
// adapters: the hello, then one reply per request line, in order; a line
// that is not a request ends the device with exit 2.
import readline from 'node:readline'

export function die(msg) {
	process.stderr.write(`badmac-baileys: ${msg}\n`)
	process.exit(2)
}

export const out = (obj) => process.stdout.write(JSON.stringify({ v: 1, ...obj }) + '\n')

// serve greets with hello and answers each request with handle's result,
// status() and the events since the last reply (takeEvents): an event that
// came after a reply is late, never lost.
export function serve(hello, handle, takeEvents, status = () => ({})) {
	out(hello)
	const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
	let chain = Promise.resolve()
	rl.on('line', (line) => {
		chain = chain.then(async () => {
			let req
			try {
				req = JSON.parse(line)
			} catch (e) {
				return die(`request is not JSON: ${e.message}`)
			}
			if (req.v !== 1 || typeof req.id !== 'number' || typeof req.op !== 'string') {
				return die('bad request: want {"v":1,"id":N,"op":…}')
			}
			try {
				const res = await handle(req)
				out({ id: req.id, ok: true, ...res, ...status(), events: takeEvents() })
			} catch (e) {
				out({ id: req.id, ok: false, err: String(e && e.message || e).split('\n')[0], ...status(), events: takeEvents() })
			}
		})
	})
	rl.on('close', () => { chain.then(() => process.exit(0)) })
}
