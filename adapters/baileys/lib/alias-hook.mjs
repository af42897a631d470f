// ESM resolve hook (node:module register): a bare import of 'baileys' or
// '@whiskeysockets/baileys' from the user's auth module resolves to the
// Baileys the adapter runs, so the store and the socket share one copy
// (the pinned versions are installed under the aliases baileys6 and
// baileys7).
let alias = null
let parentURL = null
export async function initialize(data) {
	alias = data.alias
	parentURL = data.parentURL
}
export async function resolve(specifier, context, next) {
	const m = alias && /^(?:baileys|@whiskeysockets\/baileys)(\/.*)?$/.exec(specifier)
	if (m) return next(alias + (m[1] || ''), { ...context, parentURL })
	return next(specifier, context)
}
