// The in-process rtnetlink layer used by the bridge plugin. Import from here.
export * from './addr';
export * from './bridge-vlan';
export * from './errors';
export * from './link';
export * from './neigh';
export * from './route';
export { NetlinkSocket, openNetlink, withNetlink } from './socket';
export { AF_INET, AF_INET6, RT_SCOPE_HOST, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN, RTPROT_BOOT, RTPROT_KERNEL, RTPROT_STATIC } from './constants';
export type { OperState } from './constants';
