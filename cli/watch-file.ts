/** Re-reading a file the operator keeps current (a revocation list, e.g. a ConfigMap volume). */
import { readFileSync } from 'node:fs'

/** Calls `onChange(text)` when the file's content changes (checked every `ms`, default 5 s); returns the stop function. */
export function watchFile (file: string, onChange: (text: string) => void, ms = 5000): () => void {
  let last = readFileSync(file, 'utf8')
  const timer = setInterval(() => {
    let text: string
    try { text = readFileSync(file, 'utf8') } catch { return }
    if (text === last) return
    last = text
    onChange(text)
  }, ms)
  timer.unref()
  return () => clearInterval(timer)
}
