/**
 * The one logger interface of causeway's libraries (peer/, agent/, the relay client): pino's
 * `Logger` fits it as it is (the CLI passes one), the debug page passes a console adapter,
 * tests pass `silentLog`. Structured first argument, message second.
 */
export interface LogLike {
  debug: (obj: object, msg?: string) => void
  info: (obj: object, msg?: string) => void
  warn: (obj: object, msg?: string) => void
}

export const silentLog: LogLike = { debug () {}, info () {}, warn () {} }
