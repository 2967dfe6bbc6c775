import { seatContract } from './seats.contract.ts'
import { roomStoreContract, type StoreFactory } from './store.contract.ts'
import { MemoryRoomStore, type Conn } from './store.ts'

let n = 0
const memory: StoreFactory<Conn> = async (body) => {
  const store = new MemoryRoomStore<Conn>()
  const replica = { store, conn: (): Conn => ({ id: `conn-${++n}`, send () {}, close () {} }) }
  await body({ ...replica, other: replica, reload: () => store })
}
roomStoreContract<Conn>('MemoryRoomStore', memory)
seatContract<Conn>('MemoryRoomStore', memory, { roomsPerAddress: true })
