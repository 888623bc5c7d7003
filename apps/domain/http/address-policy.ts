import net from "node:net";
import ipaddr from "ipaddr.js";

type IPv4 = ipaddr.IPv4;
type IPv6 = ipaddr.IPv6;

// IANA's global unicast allocation. Everything outside it (the IPv4-compatible ::/96 such as
// ::7f00:1, the rest of ::/8, 100::/64, the RFC 8215 local NAT64 prefix...) is refused, except the
// embedding forms judged by the IPv4 address they carry, below.
const globalUnicast6 = ipaddr.IPv6.parseCIDR("2000::/3");
const nat64WellKnown = ipaddr.IPv6.parseCIDR("64:ff9b::/96");

const fromParts = (high: number, low: number): IPv4 => new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);

const isPublicV4 = (address: IPv4): boolean => address.range() === "unicast";

// The IPv4 addresses an IPv6 address leads to when it embeds them: the mapped form is the v4
// address itself; NAT64 (RFC 6052) and 6to4 (RFC 3056) gateways forward to the embedded address;
// Teredo (RFC 4380) carries the server's address and the client's, the latter with its bits flipped.
const embeddedV4 = (address: IPv6): IPv4[] | undefined => {
  const p = address.parts as [number, number, number, number, number, number, number, number];
  if (address.isIPv4MappedAddress()) return [address.toIPv4Address()];
  if (address.match(nat64WellKnown)) return [fromParts(p[6], p[7])];
  switch (address.range()) {
    case "6to4":
      return [fromParts(p[1], p[2])];
    case "teredo":
      return [fromParts(p[2], p[3]), fromParts(p[6] ^ 0xffff, p[7] ^ 0xffff)];
    default:
      return undefined;
  }
};

// Whether an outbound connection may go to this address: only globally routable unicast. Private,
// loopback, link-local, unique-local, carrier-grade NAT, multicast, broadcast, unspecified,
// documentation, benchmarking and other reserved ranges all answer false (ipaddr.js keeps the list),
// as does anything that is not an IP address at all.
// Strict parsing. net.isIP first: ipaddr.js alone also reads legacy forms such as "0x7f.1". IPv6
// goes through the URL parser's canonical form because ipaddr.js reads the dotted IPv4-compatible
// form "::8.8.8.8" (which glibc prints for ::808:808) as if it were the mapped ::ffff:8.8.8.8.
// A zone (fe80::1%eth0) only means something on a local link: not an address we accept.
const parseStrict = (address: string): IPv4 | IPv6 | undefined => {
  const family = net.isIP(address);
  if (family === 4) return ipaddr.IPv4.parse(address);
  if (family !== 6 || address.includes("%")) return undefined;
  return ipaddr.IPv6.parse(new URL(`http://[${address}]`).hostname.slice(1, -1));
};

// Whether an outbound connection may go to this address: only globally routable unicast. Private,
// loopback, link-local, unique-local, carrier-grade NAT, multicast, broadcast, unspecified,
// documentation, benchmarking and other reserved ranges all answer false (ipaddr.js keeps the list),
// as does anything that is not an IP address at all.
export const isPublicAddress = (address: string): boolean => {
  const parsed = parseStrict(address);
  if (!parsed) return false;
  if (parsed.kind() === "ipv4") return isPublicV4(parsed as IPv4);
  const v6 = parsed as IPv6;
  const embedded = embeddedV4(v6);
  if (embedded) return embedded.every(isPublicV4);
  return v6.match(globalUnicast6) && v6.range() === "unicast";
};
