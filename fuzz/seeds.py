#!/usr/bin/env python3
"""Writes the fuzz targets' saved seeds, corpus/TARGET/NAME: a few meaningful inputs
each, in the layouts the targets' module docs describe. Run it from anywhere after
changing a layout; the files it writes are committed.

    python3 fuzz/seeds.py
"""
import pathlib
import re
import struct

FUZZ = pathlib.Path(__file__).resolve().parent
REPO = FUZZ.parent


def write(target, name, data):
    path = FUZZ / "corpus" / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


# Frames ----------------------------------------------------------------------------

def mac(last, first=0x02):
    return bytes([first, 0, 0, 0, 0, last])


BROADCAST = b"\xff" * 6
MULTICAST = bytes.fromhex("01005e000001")
LLDP = bytes.fromhex("0180c200000e")
STP = bytes.fromhex("0180c2000000")


def tag(tci, tpid=0x8100):
    return struct.pack(">HH", tpid, tci)


def frame(dst, src, tags=b"", ethertype=0x0800, size=60):
    f = dst + src + tags + struct.pack(">H", ethertype)
    return f + bytes(max(0, size - len(f)))


UNTAGGED = frame(mac(2), mac(1))
TAGGED_2 = frame(mac(2), mac(1), tag(0x2002))  # priority 1, VLAN 2
PRIORITY = frame(mac(2), mac(1), tag(0xA000))  # priority 5, VLAN 0
DOUBLE = frame(mac(2), mac(1), tag(0x0000) + tag(0x0002))  # a priority tag hiding VLAN 2
QINQ = frame(mac(2), mac(1), tag(0x0001, 0x88A8) + tag(0x0002))
LEGACY_QINQ = frame(mac(2), mac(1), tag(0x0001, 0x9100) + tag(0x0002))
CUT_TAG = frame(mac(2), mac(1), tag(0x0002), size=0)[:16]
RUNT = UNTAGGED[:10]


# decide ----------------------------------------------------------------------------

MODES = {"veb": 0, "vepa": 1, "private": 2, "xconnect": 3, "passthru": 4}
NO_UPLINK = 0xFF
HAIRPIN, FREE, ALLOW, STATIC = 1, 2, 4, 8
MONITOR = 0x80
ACCESS, TRUNK, TRUNK_NATIVE = 1 << 4, 2 << 4, 3 << 4


STRIDES = {1: 0, 5: 1, 11: 2, 16: 3}


def bridge(mode, ports, uplink=NO_UPLINK, down=0, mask=0, fdb=3, stride=1):
    """The set-up: ports is a list of (flags, vlans) pairs, port i in slot i x stride."""
    shape = len(ports) - 1 | STRIDES[stride] << 6
    head = bytes([MODES[mode], shape, uplink, down]) + struct.pack(">H", mask)
    return head + bytes([fdb]) + b"".join(bytes(p) for p in ports)


def frames(*records):
    """(ingress, frame) or (ingress, frame, now, age) records."""
    out = b""
    for record in records:
        ingress, f = record[0], record[1]
        now = record[2] if len(record) > 2 else 1
        age = 0x80 if len(record) > 3 and record[3] else 0
        out += bytes([ingress | age, now, len(f)]) + f
    return out


def decide_seeds():
    plain = (0, 0)
    conversation = frames(
        (0, frame(BROADCAST, mac(0))),  # flooded, station 0 learned on port 0
        (1, frame(mac(0), mac(1))),  # straight back to port 0
        (0, frame(mac(1), mac(0))),
        (2, frame(mac(1), mac(0))),  # station 0 moved to port 2
        (1, frame(MULTICAST, mac(1))),
        (1, frame(LLDP, mac(1))),
        (1, frame(mac(0), MULTICAST)),  # a multicast source
        (1, frame(mac(0), bytes(6))),  # an all-zero source
        (0, RUNT),
        (0, UNTAGGED[:14]),  # a header alone
        (2, frame(mac(0), mac(1)), 200, True),  # after aging
    )
    write("decide", "veb-three-ports", bridge("veb", [plain] * 3) + conversation)
    for mode in ("vepa", "private"):
        reflected = frames(
            (0, frame(mac(9), mac(0))),  # up, whatever the destination
            (1, frame(mac(0), mac(1))),
            (2, frame(mac(1), mac(0))),  # reflected by the adjacent switch
            (2, frame(BROADCAST, mac(0))),
            (2, frame(mac(0), mac(7))),  # a station out on the network
            (2, frame(BROADCAST, mac(7))),
            (2, frame(STP, mac(7))),
        )
        write("decide", f"{mode}-uplink-reflects",
              bridge(mode, [plain, plain, plain], uplink=2) + reflected)
    vlans = bridge("veb", [
        (ACCESS, 0),  # VLAN 1
        (ACCESS, 1),  # VLAN 2
        (TRUNK_NATIVE, 0b0011 | 2 << 4),  # VLANs 1 and 2 tagged, 3 native
        plain,  # VLAN 1 (no setting)
    ])
    write("decide", "vlans-access-and-trunk", vlans + frames(
        (0, UNTAGGED), (2, TAGGED_2), (1, PRIORITY), (2, PRIORITY), (0, TAGGED_2),
        (2, DOUBLE), (2, QINQ), (2, LEGACY_QINQ), (2, CUT_TAG), (3, frame(BROADCAST, mac(3))),
        (1, frame(mac(3), mac(2))),
    ))
    vepa_vlans = bridge("vepa", [(ACCESS, 0), (ACCESS, 1), (TRUNK, 0b0001)], uplink=2)
    write("decide", "vepa-vlan-not-on-uplink", vepa_vlans + frames(
        (0, UNTAGGED), (1, UNTAGGED), (2, frame(BROADCAST, mac(7), tag(0x0001))),
    ))
    guarded = bridge("veb", [(HAIRPIN | ALLOW, 0), (STATIC, 0), (FREE, 0), plain],
                     down=0b1000, mask=0x4000)
    write("decide", "hairpin-spoofing-static-down", guarded + frames(
        (0, frame(BROADCAST, mac(0))),  # an allowed source, back out of port 0 too
        (0, frame(mac(0x21), mac(0x10))),  # to the static MAC on port 1
        (0, frame(mac(2), mac(5))),  # spoofed
        (1, frame(LLDP, mac(1))),  # relayed by the mask
        (1, frame(mac(0), mac(3))),
        (3, frame(mac(0), mac(3))),
    ))
    # 64 ports 16 slots apart (slots 0 to 1008, past 255 and across a port set's
    # words), VLANs 1 and 2 by turns, the last one a trunk of both: floods and
    # learning across them.
    sparse = bridge("veb", [(ACCESS, i % 2) for i in range(63)] + [(TRUNK, 0b0011)],
                    stride=16)
    write("decide", "veb-sparse-slots", sparse + frames(
        (0, frame(BROADCAST, mac(0))), (63, frame(mac(0), mac(63), tag(0x0001))),
        (17, frame(BROADCAST, mac(17))), (62, frame(mac(17), mac(62))),
        (63, frame(BROADCAST, mac(63), tag(0x0002))), (1, frame(mac(63), mac(1))),
    ))
    # Port 2 a mirror's monitor port with a static MAC: what it sends is dropped,
    # floods pass it by, and a frame for its station is dropped.
    monitored = bridge("vepa", [plain, plain, (MONITOR | STATIC, 0), plain], uplink=3)
    write("decide", "vepa-monitor-port", monitored + frames(
        (2, frame(BROADCAST, mac(2))), (2, RUNT), (3, frame(BROADCAST, mac(7))),
        (3, frame(mac(0x22), mac(7))), (0, frame(mac(0x22), mac(0))),
    ))
    write("decide", "xconnect", bridge("xconnect", [plain, plain]) + frames(
        (0, UNTAGGED), (1, frame(BROADCAST, bytes(6))), (0, RUNT),
    ))
    write("decide", "passthru", bridge("passthru", [(ALLOW, 0), plain], uplink=1) + frames(
        (0, frame(BROADCAST, mac(0))), (0, frame(mac(9), mac(5))), (1, frame(mac(0), mac(9))),
    ))


# vlan_retag ------------------------------------------------------------------------

def vlan_seeds():
    # Ports: access 1, access 2, trunk of 1 and 2 with native 3, no setting (VLAN 1).
    ports = bytes([3, 1, 0, 1, 1, 3, 0b0011, 2, 0, 0, 2])

    def records(*rs):
        return b"".join(bytes([p, len(f)]) + f for p, f in rs)

    every = records(
        (0, UNTAGGED), (2, TAGGED_2), (0, PRIORITY), (2, PRIORITY), (3, PRIORITY), (2, DOUBLE),
        (2, QINQ), (2, LEGACY_QINQ), (2, CUT_TAG), (2, frame(mac(2), mac(1), tag(0x6003))),
        (2, UNTAGGED), (1, TAGGED_2), (2, frame(mac(2), mac(1), tag(0x0002) + tag(0x0001))),
    )
    write("vlan_retag", "access-and-trunk", ports + every)
    write("vlan_retag", "unaware", bytes([1, 0, 0, 0, 0, 1]) + records(
        (0, UNTAGGED), (1, TAGGED_2), (0, QINQ),
    ))
    # A trunk without a native VLAN, and one whose native VLAN it also lists tagged.
    write("vlan_retag", "trunks", bytes([1, 2, 0b0110, 3, 0b0011, 1, 1]) + records(
        (0, UNTAGGED), (0, PRIORITY), (0, TAGGED_2), (1, TAGGED_2), (1, UNTAGGED),
        (1, frame(mac(2), mac(1), tag(0xE002))),
    ))


# config_file -----------------------------------------------------------------------

def config_seeds():
    write("config_file", "contrib-hairpin", (REPO / "contrib/hairpin.toml").read_text())
    for source in ("configmap", "vepa-pool"):
        text = (REPO / f"deploy/kubernetes/{source}.yaml").read_text()
        block = re.search(r"hairpin\.toml: \|\n((?:    .*\n|\n)+)", text)
        if block:
            toml = "\n".join(line[4:] for line in block.group(1).splitlines())
            write("config_file", f"kubernetes-{source}", toml + "\n")
    readme = (REPO / "README.md").read_text()
    for i, block in enumerate(readme.split("```toml\n")[1:]):
        write("config_file", f"readme-{i}", block.split("```")[0])
    write("config_file", "trunk-native-and-statics", """\
mode = "private"
group_fwd_mask = 0x4008
[fdb]
size = 1
age = 1
[[port]]
name = "up\\tlink \\"0\\""
role = "uplink"
trunk = " 4094, 1-3,2"
native = 4094
hairpin = true
[[port]]
name = "vf0"
vlan = 3
allowed_macs = ["02-00-00-00-00-10", "02:00:00:00:00:11"]
static_macs = ["02:00:00:00:00:10", "02:00:00:00:00:10"]
""")


# port_spec -------------------------------------------------------------------------

def port_spec_seeds():
    lines = {
        "run-veb": "run --ports vf0,vf1 --uplink eth0",
        "run-vepa-allow": "run --mode vepa --ports vf0,vf1 --uplink eth0 --allow vf0=02:00:00:00:00:10",
        "run-reflective-relay": "run --ports eth1 --hairpin eth1",
        "run-vlans": "run --ports vf0,vf1,vf2 --uplink eth0 --vlan vf0=10 --vlan vf1=10 "
                     "--vlan vf2=20 --trunk eth0=10,20 --native eth0=1",
        "run-xconnect": "run --mode xconnect --ports eth1,eth2",
        "run-passthru-static": "run --mode=passthru --ports vf0 --uplink=eth0 "
                               "--static-mac vf0=02:00:00:00:00:10 --allow vf0=02-00-00-00-00-10",
        "port-add-access": "port add vnet0 --vlan 20 --allow 52:54:00:14:00:02",
        "port-add-trunk": "port add eth0 --uplink --trunk 10,20-30 --native 1 --hairpin",
        "port-add-statics": "port add vf3 --static-mac 02:00:00:00:00:03 --static-mac 02:00:00:00:00:03",
        "port-add-max-macs": "port add vf4 --max-macs 2",
        "run-max-macs": "run --ports vf0,vf1 --uplink eth0 --max-macs vf0=16 --max-macs eth0=0",
        "port-add-limits": "port add vf5 --police-rate 100M --police-burst 64k --police-pps 1000 "
        "--storm-broadcast 1000 --storm-multicast 0 --storm-unknown-unicast 10 --storm-burst 5",
        "run-limits": "run --ports vf0,vf1 --police-rate vf0=1G --storm-broadcast vf1=100 "
        "--storm-burst vf1=1 --police-pps vf1=7",
        "port-add-bad-limits": "port add vf6 --police-rate 1k --storm-burst 3",
    }
    for name, line in lines.items():
        write("port_spec", name, line + "\n")


# netlink ---------------------------------------------------------------------------

RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR = 16, 17, 20, 21
NLMSG_ERROR, NLMSG_DONE, NLM_F_MULTI = 2, 3, 2
IFF_UP, IFF_BROADCAST, IFF_LOOPBACK, IFF_RUNNING, IFF_LOWER_UP = 1, 2, 8, 0x40, 0x10000
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_TXQLEN, IFLA_XDP, IFLA_MAX_MTU = 1, 3, 4, 13, 43, 51
IFLA_XDP_ATTACHED, IFLA_XDP_PROG_ID = 2, 4
IFA_ADDRESS, IFA_LOCAL = 1, 2
AF_UNSPEC, AF_INET, AF_BRIDGE, AF_INET6 = 0, 2, 7, 10


def attr(kind, data):
    a = struct.pack("=HH", 4 + len(data), kind) + data
    return a + bytes(-len(a) % 4)


def message(kind, payload, flags=0, seq=0):
    m = struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload
    return m + bytes(-len(m) % 4)


def link(index, flags, name, mtu=1500, address=None, max_mtu=None, xdp=None, family=AF_UNSPEC):
    p = struct.pack("=BBHiII", family, 0, 1, index, flags, 0xFFFFFFFF)
    p += attr(IFLA_IFNAME, name.encode() + b"\0") + attr(IFLA_MTU, struct.pack("=I", mtu))
    p += attr(IFLA_TXQLEN, struct.pack("=I", 1000))
    if address is not None:
        p += attr(IFLA_ADDRESS, address)
    if max_mtu is not None:
        p += attr(IFLA_MAX_MTU, struct.pack("=I", max_mtu))
    if xdp is not None:
        p += attr(IFLA_XDP | 0x8000, attr(IFLA_XDP_ATTACHED, b"\x01")
                  + attr(IFLA_XDP_PROG_ID, struct.pack("=I", xdp)))
    return p


def address(index, family, *attrs):
    return struct.pack("=BBBBI", family, 24, 0, 0, index) + b"".join(attr(k, v) for k, v in attrs)


def netlink_seeds():
    up = IFF_UP | IFF_BROADCAST | IFF_RUNNING | IFF_LOWER_UP
    veth = link(7, up, "hp-veth0", address=mac(1), max_mtu=65535, xdp=42)
    write("netlink", "newlink-veth-with-xdp", message(RTM_NEWLINK, veth))
    write("netlink", "dellink", message(RTM_DELLINK, link(7, 0, "hp-veth0")))
    write("netlink", "newlink-bridge-port", message(RTM_NEWLINK, link(7, up, "hp-veth0", family=AF_BRIDGE)))
    lo = link(1, IFF_UP | IFF_LOOPBACK | IFF_RUNNING, "lo", mtu=65536, max_mtu=0)
    v4 = address(5, AF_INET, (IFA_ADDRESS, bytes([198, 18, 0, 2])), (IFA_LOCAL, bytes([198, 18, 0, 1])))
    v6 = address(5, AF_INET6, (IFA_ADDRESS, bytes.fromhex("20010db8000000000000000000000001")))
    write("netlink", "addresses", message(RTM_NEWADDR, v4) + message(RTM_DELADDR, v6))
    write("netlink", "link-dump", message(RTM_NEWLINK, lo, NLM_F_MULTI, 9)
          + message(RTM_NEWLINK, veth, NLM_F_MULTI, 9) + message(NLMSG_DONE, struct.pack("=i", 0), NLM_F_MULTI, 9))
    write("netlink", "address-dump", message(RTM_NEWADDR, v4, NLM_F_MULTI, 3)
          + message(RTM_NEWADDR, v6, NLM_F_MULTI, 3) + message(NLMSG_DONE, b"", NLM_F_MULTI, 3))
    request = message(18, bytes(16), 1, 4)  # the RTM_GETLINK the error answers
    write("netlink", "error-enodev", message(NLMSG_ERROR, struct.pack("=i", -19) + request, 0, 4))


decide_seeds()
vlan_seeds()
config_seeds()
port_spec_seeds()
netlink_seeds()


# ip_guard --------------------------------------------------------------------------

def ip_guard_seeds():
    """A VM allowed 10.0.0.5/32 and fd00::5/128 (palette bits 0 and 2), its own MAC,
    and one raw frame each (kind 0: the bytes after the source MAC), or a few
    structured ones."""
    head = bytes([0b0000_0101, 0, 1])
    own4, theirs4 = bytes([10, 0, 0, 5]), bytes([10, 0, 0, 6])
    own6 = bytes.fromhex("fd000000000000000000000000000005")
    theirs6 = bytes.fromhex("fd000000000000000000000000000006")
    vm = bytes.fromhex("525400123456")
    link_local = bytes.fromhex("fe80000000000000") + bytes([0x52 ^ 2, 0x54, 0, 0xFF, 0xFE, 0x12, 0x34, 0x56])

    def raw(ethertype, payload, tags=b""):
        return head + bytes([0, 0]) + tags + struct.pack(">H", ethertype) + payload

    def arp(op, sender, target, sha=vm):
        return bytes.fromhex("000108000604") + bytes([0, op]) + sha + sender + bytes(6) + target

    def ipv4(src, proto, payload):
        return struct.pack(">BBHHHBBH", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0) \
            + src + b"\xff" * 4 + payload

    def ipv6(src, nxt, payload):
        return struct.pack(">IHBB", 0x6000_0000, len(payload), nxt, 255) + src \
            + bytes.fromhex("ff020000000000000000000000000001") + payload

    def nd(kind, target=b"", options=b""):
        return bytes([kind, 0, 0, 0, 0, 0, 0, 0]) + target + options

    def lla(kind, mac):
        return bytes([kind, 1]) + mac

    write("ip_guard", "gratuitous-arp-for-a-neighbour", raw(0x0806, arp(2, theirs4, theirs4)))
    write("ip_guard", "own-gratuitous-arp", raw(0x0806, arp(2, own4, own4)))
    write("ip_guard", "arp-probe", raw(0x0806, arp(1, bytes(4), own4)))
    write("ip_guard", "foreign-ipv4", raw(0x0800, ipv4(theirs4, 6, bytes(20))))
    write("ip_guard", "dhcp-discover", raw(0x0800, ipv4(bytes(4), 17, struct.pack(">HHHH", 68, 67, 8, 0))))
    write("ip_guard", "unsolicited-na-for-a-neighbour",
          raw(0x86DD, ipv6(own6, 58, nd(136, theirs6, lla(2, vm)))))
    write("ip_guard", "dad", raw(0x86DD, ipv6(bytes(16), 58, nd(135, own6))))
    write("ip_guard", "own-link-local-na", raw(0x86DD, ipv6(link_local, 58, nd(136, link_local, lla(2, vm)))))
    hbh = bytes([143, 0, 5, 2, 0, 0, 1, 0])
    write("ip_guard", "mld-behind-hop-by-hop", raw(0x86DD, ipv6(bytes(16), 0, hbh + nd(143))))
    hidden = bytes([58, 0, 1, 4, 0, 0, 0, 0]) + nd(136, theirs6)
    write("ip_guard", "na-behind-destination-options", raw(0x86DD, ipv6(own6, 60, hidden)))
    fragment = bytes([58, 0, 0, 1, 0, 0, 0, 7]) + nd(136, own6)
    write("ip_guard", "fragmented-na", raw(0x86DD, ipv6(own6, 44, fragment)))
    write("ip_guard", "tagged-foreign-ipv4", raw(0x0800, ipv4(theirs4, 6, bytes(20)), tag(10)))
    write("ip_guard", "lldp", raw(0x88CC, bytes(46)))
    # Structured: ARP, IPv4, IPv6 (two extension headers, an NA), another EtherType;
    # then a second guard with random prefixes and a random MAC.
    write("ip_guard", "structured", head + bytes([1, 0, 0, 0, 1, 1])
          + bytes([2, 1, 0, 0, 0, 1, 0, 5])
          + bytes([3, 0b0100, 0, 2, 1, 0, 2, 0, 0, 5, 2, 0, 1, 0, 0, 2, 0])
          + bytes([4, 0, 0x88, 0xCC]))
    write("ip_guard", "random-prefixes", bytes([0, 2, 1, 64]) + own6 + bytes([0, 24]) + own4
          + bytes([0]) + vm + bytes([3, 0, 6, 3, 1, 0, 0]))


ip_guard_seeds()
