import { startNode } from './servers.ts'
import { signalingSuite } from './ws.suite.ts'

signalingSuite('node', startNode)
