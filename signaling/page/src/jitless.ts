/**
 * Imported first by main.ts: zod compiles object parsers with `new Function` unless told not
 * to, and probes for it at schema construction (module load). The page's CSP has no
 * 'unsafe-eval', so the probe would log a violation; jitless mode skips it.
 */
import * as z from 'zod'

z.config({ jitless: true })
