import { describe, expect, it } from 'vitest'
import { Emitter } from './emitter.ts'

interface Events { n: (x: number) => void, s: (a: string, b: string) => void }

describe('Emitter', () => {
  it('delivers to every subscriber until it unsubscribes; a throwing one does not stop the others', () => {
    const errors: unknown[] = []
    const e = new Emitter<Events>(err => errors.push(err))
    const got: string[] = []
    const offA = e.on('n', x => got.push(`a${x}`))
    e.on('n', () => { throw new Error('boom') })
    e.on('n', x => got.push(`c${x}`))
    e.emit('n', 1)
    offA()
    e.emit('n', 2)
    expect(got).toEqual(['a1', 'c1', 'c2'])
    expect(errors.map(x => (x as Error).message)).toEqual(['boom', 'boom'])
    expect(e.count('n')).toBe(2)
  })

  it('the same function subscribed twice is two subscriptions', () => {
    const e = new Emitter<Events>()
    let calls = 0
    const fn = (): void => { calls++ }
    const off1 = e.on('n', fn)
    e.on('n', fn)
    off1()
    e.emit('n', 0)
    expect(calls).toBe(1)
  })

  it('until resolves on the first matching event and unsubscribes; rejects when the signal aborts', async () => {
    const e = new Emitter<Events>()
    const p = e.until('s', (a) => a === 'yes')
    e.emit('s', 'no', '1')
    e.emit('s', 'yes', '2')
    expect(await p).toEqual(['yes', '2'])
    expect(e.count('s')).toBe(0)
    const ac = new AbortController()
    const q = e.until('n', () => true, ac.signal)
    ac.abort(new Error('gave up'))
    await expect(q).rejects.toThrow('gave up')
    expect(e.count('n')).toBe(0)
  })
})
