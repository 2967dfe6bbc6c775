import { roomStoreContract } from './store.contract.ts'
import { MemoryRoomStore, type Conn } from './store.ts'

let n = 0
roomStoreContract<Conn>('MemoryRoomStore', async (body) => {
  const store = new MemoryRoomStore<Conn>()
  await body({
    store,
    conn: () => ({ id: `conn-${++n}`, send () {}, close () {} }),
    reload: () => store,
  })
})
