import { roomStoreContract } from './store.contract.ts'
import { MemoryRoomStore, type Conn } from './store.ts'

let n = 0
roomStoreContract<Conn>('MemoryRoomStore', async (body) => {
  const store = new MemoryRoomStore<Conn>()
  const replica = { store, conn: (): Conn => ({ id: `conn-${++n}`, send () {}, close () {} }) }
  await body({ ...replica, other: replica, reload: () => store })
})
