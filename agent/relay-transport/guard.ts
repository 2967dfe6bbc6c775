/**
 * Makes a lost relay path visible on a stream.
 *
 * js-libp2p (utils 7, yamux 8) ends every stream of a connection whose transport closed as if
 * it had finished cleanly: `'close'` without an error and a normal end of the async iterator.
 * For a relayed connection that is what happens when the relay dies, and a TCP tunnel would
 * then see a truncated stream as a clean EOF. The guard wraps the stream's transport-closed
 * hook: when the transport goes away before both sides closed their writable ends, the stream
 * is aborted with RelayPathLostError instead. A normal end (both ends closed writing) is left
 * untouched. Streams without that hook (other implementations) are returned as they are.
 */
import type { Stream } from '@libp2p/interface'
import { RelayPathLostError } from './errors.ts'

type Hooked = Stream & { onTransportClosed?: (err?: Error) => void }

export function guardStream (stream: Stream): Stream {
  const hooked: Hooked = stream
  const original = hooked.onTransportClosed
  if (typeof original !== 'function') return stream
  hooked.onTransportClosed = (err?: Error): void => {
    const finished = stream.writeStatus === 'closed' && stream.remoteWriteStatus === 'closed'
    original.call(stream, err ?? (finished ? undefined : new RelayPathLostError('relay path lost before the stream finished')))
  }
  return stream
}
