// nftables over nfnetlink, in-process: only the lookup DEL needs to know, without exec'ing `nft`,
// whether a table exists at all (masquerade's nftables sweep has nothing to do when it does not).
import { NLM_F_REQUEST } from './constants';
import { ENOENT } from './errno';
import { NetlinkError } from './errors';
import { attrStr, nfgenmsg, nlmsg } from './message';
import type { NetlinkSocket } from './socket';

const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_GETTABLE = 1;
const NFTA_TABLE_NAME = 1;

/** nftables' table families (NFPROTO_*); `inet` is the dual-stack one. */
export const NFPROTO_INET = 1;

/** The request for one table by family and name (the kernel answers NFT_MSG_NEWTABLE or ENOENT). */
export function buildGetTable(family: number, name: string): Buffer {
  return nlmsg((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE, NLM_F_REQUEST, nfgenmsg(family), attrStr(NFTA_TABLE_NAME, name));
}

/**
 * Whether table `name` of `family` (NFPROTO_*) exists in the netns of `nl` (a NETLINK_NETFILTER
 * socket). False only on the kernel's ENOENT; throws NetlinkError for any other answer (EINVAL or
 * EPROTONOSUPPORT when the kernel has no nf_tables, EPERM without CAP_NET_ADMIN).
 */
export function nftTableExists(nl: NetlinkSocket, family: number, name: string): boolean {
  try {
    nl.request(buildGetTable(family, name), 'looking up nftables table', name);
    return true;
  } catch (e) {
    if (e instanceof NetlinkError && e.errno === ENOENT) return false;
    throw e;
  }
}
