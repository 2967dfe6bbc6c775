/**
 * The RoomStore contract, run against every implementation (partyserver style):
 * MemoryRoomStore in store.test.ts, DurableObjectRoomStore inside workerd in
 * worker/store.workerd.test.ts.
 *
 * `makeStore` runs one test body against a fresh, empty store and its harness. It takes the
 * body (rather than returning a store) so that an implementation can run it where its store
 * lives — for the Durable Object store, inside the object (`runInDurableObject`).
 */
import { describe, expect, it } from 'vitest'
import type { Conn, RoomStore } from './store.ts'

export interface StoreHarness<C extends Conn> {
  store: RoomStore<C>
  /** A new open connection of this store's kind. */
  conn: () => C
  /** The store as a fresh instance would see it (after a Durable Object wakes up); the same store where state is only in memory. */
  reload: () => RoomStore<C>
}

export type StoreFactory<C extends Conn> = (body: (h: StoreHarness<C>) => void | Promise<void>) => Promise<void>

export function roomStoreContract<C extends Conn> (name: string, makeStore: StoreFactory<C>): void {
  describe(`RoomStore contract: ${name}`, () => {
    it('starts empty', async () => {
      await makeStore(({ store, conn }) => {
        expect(store.size()).toBe(0)
        expect(store.peers()).toEqual([])
        expect(store.get('peer-aaaa')).toBeUndefined()
        expect(store.peerOf(conn())).toBeUndefined()
      })
    })

    it('join records the peer both ways', async () => {
      await makeStore(({ store, conn }) => {
        const a = conn()
        const b = conn()
        expect(store.join('peer-aaaa', a)).toBeUndefined()
        expect(store.join('peer-bbbb', b)).toBeUndefined()
        expect(store.get('peer-aaaa')?.id).toBe(a.id)
        expect(store.get('peer-bbbb')?.id).toBe(b.id)
        expect(store.peerOf(a)).toBe('peer-aaaa')
        expect(store.peerOf(b)).toBe('peer-bbbb')
        expect(store.peers().sort()).toEqual(['peer-aaaa', 'peer-bbbb'])
        expect(store.size()).toBe(2)
      })
    })

    it('joining again on the same connection is not a replace', async () => {
      await makeStore(({ store, conn }) => {
        const a = conn()
        store.join('peer-aaaa', a)
        expect(store.join('peer-aaaa', a)).toBeUndefined()
        expect(store.size()).toBe(1)
      })
    })

    it('a second join of a peer replaces and returns the old connection', async () => {
      await makeStore(({ store, conn }) => {
        const old = conn()
        const fresh = conn()
        store.join('peer-aaaa', old)
        const replaced = store.join('peer-aaaa', fresh)
        expect(replaced?.id).toBe(old.id)
        expect(store.get('peer-aaaa')?.id).toBe(fresh.id)
        expect(store.peerOf(fresh)).toBe('peer-aaaa')
        expect(store.peerOf(old)).toBeUndefined()
        expect(store.size()).toBe(1)
      })
    })

    it('leave of a replaced connection keeps the new one', async () => {
      await makeStore(({ store, conn }) => {
        const old = conn()
        const fresh = conn()
        store.join('peer-aaaa', old)
        store.join('peer-aaaa', fresh)
        expect(store.leave(old)).toBeUndefined()
        expect(store.get('peer-aaaa')?.id).toBe(fresh.id)
        expect(store.peers()).toEqual(['peer-aaaa'])
        expect(store.leave(fresh)).toBe('peer-aaaa')
        expect(store.size()).toBe(0)
        expect(store.get('peer-aaaa')).toBeUndefined()
      })
    })

    it('leave returns the peer once, and nothing for a connection that never joined', async () => {
      await makeStore(({ store, conn }) => {
        const a = conn()
        const stranger = conn()
        store.join('peer-aaaa', a)
        expect(store.leave(stranger)).toBeUndefined()
        expect(store.leave(a)).toBe('peer-aaaa')
        expect(store.leave(a)).toBeUndefined()
        expect(store.peerOf(a)).toBeUndefined()
        expect(store.size()).toBe(0)
      })
    })

    it('a connection that joins as another peer id moves', async () => {
      await makeStore(({ store, conn }) => {
        const a = conn()
        store.join('peer-aaaa', a)
        store.join('peer-cccc', a)
        expect(store.get('peer-aaaa')).toBeUndefined()
        expect(store.get('peer-cccc')?.id).toBe(a.id)
        expect(store.peerOf(a)).toBe('peer-cccc')
        expect(store.size()).toBe(1)
      })
    })

    it('state survives a reload (hibernation): joins, replaces and leaves', async () => {
      await makeStore(({ store, conn, reload }) => {
        const a = conn()
        const a2 = conn()
        const b = conn()
        const c = conn()
        store.join('peer-aaaa', a)
        store.join('peer-bbbb', b)
        store.join('peer-cccc', c)
        store.join('peer-aaaa', a2)
        store.leave(c)
        const again = reload()
        expect(again.peers().sort()).toEqual(['peer-aaaa', 'peer-bbbb'])
        expect(again.get('peer-aaaa')?.id).toBe(a2.id)
        expect(again.get('peer-bbbb')?.id).toBe(b.id)
        expect(again.size()).toBe(2)
        expect(again.peerOf(a2)).toBe('peer-aaaa')
        expect(again.peerOf(a)).toBeUndefined()
        expect(again.leave(a)).toBeUndefined()
        expect(again.leave(b)).toBe('peer-bbbb')
        expect(again.peers()).toEqual(['peer-aaaa'])
      })
    })

    it('remembers each peer\'s role, across a replace and a reload', async () => {
      await makeStore(({ store, conn, reload }) => {
        const a = conn()
        const v = conn()
        store.join('peer-aaaa', a)
        store.join('peer-vvvv', v, 'viewer')
        expect(store.roleOf('peer-aaaa')).toBe('agent')
        expect(store.roleOf('peer-vvvv')).toBe('viewer')
        const v2 = conn()
        store.join('peer-vvvv', v2, 'agent')
        expect(reload().roleOf('peer-vvvv')).toBe('agent')
        expect(reload().roleOf('peer-aaaa')).toBe('agent')
        store.leave(v2)
        expect(store.roleOf('peer-vvvv')).toBeUndefined()
        expect(store.roleOf('peer-nobody')).toBeUndefined()
      })
    })

    it('the connection handed back is the one that sends', async () => {
      await makeStore(({ store, conn }) => {
        const a = conn()
        store.join('peer-aaaa', a)
        const got = store.get('peer-aaaa')
        expect(got).toBeDefined()
        expect(() => got?.send('{"type":"pong","id":1}')).not.toThrow()
      })
    })
  })
}
