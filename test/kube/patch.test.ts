/** The test apiserver's PATCH flavours and selectors, checked against the documented semantics. */
import { describe, expect, it } from 'vitest'
import { jsonPatch, mergePatch, PatchError, strategicMergePatch } from './patch.ts'
import { parseFieldSelector, parseLabelSelector } from './selectors.ts'

describe('patches', () => {
  it('merge patch (RFC 7386): maps merge, null deletes, lists are replaced', () => {
    expect(mergePatch({ a: { b: 1, c: 2 }, l: [1, 2] }, { a: { b: null, d: 3 }, l: [3] })).toEqual({ a: { c: 2, d: 3 }, l: [3] })
  })

  it('strategic merge: merge keys, $patch delete/replace, $setElementOrder, $retainKeys, $deleteFromPrimitiveList', () => {
    const svc = { spec: { ports: [{ port: 80, name: 'http' }, { port: 443, name: 'https' }] }, metadata: { finalizers: ['a'] } }
    expect(
      strategicMergePatch(svc, {
        spec: { ports: [{ port: 8080, name: 'alt' }, { port: 80, $patch: 'delete' }, { port: 443, name: 'tls' }], '$setElementOrder/ports': [{ port: 8080 }, { port: 443 }] },
        metadata: { finalizers: ['b'] },
      }),
    ).toEqual({ spec: { ports: [{ port: 8080, name: 'alt' }, { port: 443, name: 'tls' }] }, metadata: { finalizers: ['a', 'b'] } })
    expect(strategicMergePatch({ data: { a: '1', b: '2' } }, { data: { $patch: 'replace', c: '3' } })).toEqual({ data: { c: '3' } })
    expect(strategicMergePatch({ s: { a: 1, b: 2 } }, { s: { $retainKeys: ['b', 'c'], c: 3 } })).toEqual({ s: { b: 2, c: 3 } })
    expect(strategicMergePatch({ metadata: { finalizers: ['a', 'b'] } }, { metadata: { '$deleteFromPrimitiveList/finalizers': ['a'] } })).toEqual({ metadata: { finalizers: ['b'] } })
    const slice = { endpoints: [{ addresses: ['1.1.1.1'] }], ports: [{ port: 1 }] }
    expect(strategicMergePatch(slice, { ports: [{ port: 2 }] }, { atomicTopLevel: new Set(['ports', 'endpoints']) })).toEqual({ endpoints: [{ addresses: ['1.1.1.1'] }], ports: [{ port: 2 }] })
    const pod = { spec: { containers: [{ name: 'a', image: 'x', env: [{ name: 'A', value: '1' }] }] } }
    expect(strategicMergePatch(pod, { spec: { containers: [{ name: 'a', env: [{ name: 'B', value: '2' }] }] } })).toEqual({
      spec: { containers: [{ name: 'a', image: 'x', env: [{ name: 'A', value: '1' }, { name: 'B', value: '2' }] }] },
    })
  })

  it('json patch (RFC 6902): add, remove, replace, move, copy, test', () => {
    const doc = { metadata: { labels: { 'a/b': '1' } }, list: [1, 2] }
    expect(
      jsonPatch(doc, [
        { op: 'add', path: '/list/-', value: 3 },
        { op: 'replace', path: '/metadata/labels/a~1b', value: '2' },
        { op: 'copy', from: '/list/0', path: '/first' },
        { op: 'move', from: '/first', path: '/moved' },
        { op: 'remove', path: '/list/1' },
        { op: 'test', path: '/moved', value: 1 },
      ]),
    ).toEqual({ metadata: { labels: { 'a/b': '2' } }, list: [1, 3], moved: 1 })
    expect(() => jsonPatch(doc, [{ op: 'test', path: '/list/0', value: 9 }])).toThrow(PatchError)
    expect(() => jsonPatch(doc, [{ op: 'remove', path: '/nope' }])).toThrow(PatchError)
  })
})

describe('selectors', () => {
  const o = (labels: Record<string, string>, name = 'x') => ({ metadata: { name, labels } })
  it('label selectors: =, ==, !=, exists, !exists, in, notin', () => {
    const m = parseLabelSelector('app=web,tier!=db,env in (prod, staging),!legacy,owner,zone notin (z1)')
    expect(m(o({ app: 'web', env: 'prod', owner: 'me' }))).toBe(true)
    expect(m(o({ app: 'web', env: 'dev', owner: 'me' }))).toBe(false)
    expect(m(o({ app: 'web', env: 'prod', owner: 'me', legacy: '1' }))).toBe(false)
    expect(m(o({ app: 'web', env: 'prod', owner: 'me', zone: 'z1' }))).toBe(false)
    expect(m(o({ app: 'web', env: 'prod' }))).toBe(false)
    expect(() => parseLabelSelector('a=(b')).toThrow()
  })
  it('field selectors on dotted paths', () => {
    expect(parseFieldSelector('metadata.name=x')(o({}, 'x'))).toBe(true)
    expect(parseFieldSelector('metadata.name!=x')(o({}, 'x'))).toBe(false)
    expect(parseFieldSelector('involvedObject.kind==Service')({ involvedObject: { kind: 'Service' } })).toBe(true)
  })
})
