import { startWorkerd } from './servers.ts'
import { signalingSuite } from './ws.suite.ts'

signalingSuite('workerd', startWorkerd)
