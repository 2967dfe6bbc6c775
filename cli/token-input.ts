/** Where a command reads a token from: --token-file, CAUSEWAY_TOKEN, or (discouraged) --token. */
import { readFileSync } from 'node:fs'

export function readTokenText (flags: { token?: string | undefined, 'token-file'?: string | undefined }): string | undefined {
  if (flags.token !== undefined) {
    process.stderr.write('warning: --token puts the secret in argv, where every local user can read it (ps); use --token-file FILE or CAUSEWAY_TOKEN\n')
    return flags.token
  }
  if (flags['token-file'] !== undefined) return readFileSync(flags['token-file'], 'utf8')
  return process.env.CAUSEWAY_TOKEN
}
