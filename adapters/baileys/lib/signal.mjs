// What the adapters report of libsignal-node's state and failures.

export const b64 = (b) => Buffer.from(b).toString('base64')

// strip drops the 0x05 type byte libsignal-node keys carry.
export const strip = (k) => (k.length === 33 ? k.subarray(1) : k)

// credsView is the device's public credentials (docs/device-protocol.md).
export function credsView(c) {
	return {
		reg: c.registrationId,
		identity: b64(strip(c.signedIdentityKey.public)),
		spk_id: c.signedPreKey.keyId,
		spk: b64(strip(c.signedPreKey.keyPair.public)),
		sig: b64(c.signedPreKey.signature),
	}
}

// classify maps a libsignal-node failure to badmac's classes
// (docs/design.md §5). For "No matching sessions found" the per-session
// errors logged by decryptWithSessions are read: the first is the open
// session's.
export function classify(err, logged = []) {
	const s = String(err && (err.name + ': ' + err.message))
	if (/No matching sessions/.test(s)) {
		const first = logged.find((l) => l.startsWith('Session error:')) || ''
		if (/Bad MAC/.test(first)) return 'BadMAC'
		if (/MessageCounterError|Key used already/.test(first)) return 'OldCounter'
		return 'Other'
	}
	if (/MessageCounterError|Key used already/.test(s)) return 'OldCounter'
	if (/Bad MAC/.test(s)) return 'BadMAC'
	if (/PreKeyError|Invalid PreKey/.test(s)) return 'InvalidPreKey'
	if (/UntrustedIdentity|Untrusted identity/.test(s)) return 'UntrustedIdentity'
	if (/No session|No sessions|No open session|No session record/.test(s)) return 'NoSession'
	return 'Other'
}
