// Package netguard decides which network addresses the fleet may call on a
// caller's behalf. A URL handed to us (a room's webhook URLs) must not reach
// the host itself, the private network it runs in or anything else that is not
// a public unicast address: a check of the name is not enough (DNS can answer
// differently at dial time), so Control checks the address each connection is
// about to use.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrNotPublic is the error of a dial or URL refused for its address.
var ErrNotPublic = errors.New("address is not a public unicast address")

// reserved are ranges that are neither loopback, private, link-local nor
// multicast in the standard library's sense but are still not the public
// internet (RFC 6890 and its successors).
var reserved = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // CGNAT (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use IPv4/IPv6 translation
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments (Teredo, ORCHID…)
	netip.MustParsePrefix("2002::/16"),       // 6to4: embeds any IPv4 address
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local
}

// Public reports whether a is a public unicast address. IPv4-mapped and
// IPv4-compatible IPv6 forms are judged by the IPv4 address they carry, and
// NAT64 (64:ff9b::/96) by the address it embeds.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	if a.Is6() {
		b := a.As16()
		if netip.MustParsePrefix("64:ff9b::/96").Contains(a) || netip.MustParsePrefix("::/96").Contains(a) {
			return Public(netip.AddrFrom4([4]byte(b[12:16])))
		}
	}
	if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsPrivate() || a.IsMulticast() ||
		a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range reserved {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// Control is a net.Dialer Control hook that refuses to connect to an address
// that is not public: set it on the dialer of every client that calls URLs
// callers gave us. It sees the address the kernel will connect to, after DNS.
func Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s %s: %w", network, address, err)
	}
	if !Public(ap.Addr()) {
		return fmt.Errorf("dial %s: %w", ap.Addr(), ErrNotPublic)
	}
	return nil
}

// Dialer returns a dialer with timeout that refuses non-public addresses
// unless allowPrivate is set.
func Dialer(timeout time.Duration, allowPrivate bool) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = Control
	}
	return d
}

// HTTPURL parses raw as an absolute http or https URL with a host, of at
// most maxLen bytes (no limit if maxLen is 0): the one check of every URL
// the fleet takes in configuration or from a caller. Credentials pass;
// callers that refuse them check u.User, each saying why.
func HTTPURL(raw string, maxLen int) (*url.URL, error) {
	if maxLen > 0 && len(raw) > maxLen {
		return nil, fmt.Errorf("longer than %d bytes", maxLen)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("not an absolute http or https URL")
	}
	return u, nil
}

// CheckURLHost returns ErrNotPublic (wrapped, naming the address) if the host
// of the absolute URL s is an IP literal that is not public. A name passes:
// what it resolves to is checked at dial time by Control.
func CheckURLHost(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	h := strings.TrimSuffix(strings.TrimPrefix(u.Hostname(), "["), "]")
	if h == "" {
		return errors.New("no host")
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if !Public(a) {
			return fmt.Errorf("%s: %w", a, ErrNotPublic)
		}
		return nil
	}
	// Forms the resolver would read as an IPv4 address although netip does
	// not: decimal (2130706433), hex (0x7f000001), octal or short dotted
	// (127.1). No public name looks like this; refuse them outright.
	if looksNumeric(h) {
		return fmt.Errorf("%s: %w", h, ErrNotPublic)
	}
	if strings.EqualFold(strings.TrimSuffix(h, "."), "localhost") || strings.HasSuffix(strings.ToLower(strings.TrimSuffix(h, ".")), ".localhost") {
		return fmt.Errorf("%s: %w", h, ErrNotPublic)
	}
	return nil
}

// looksNumeric reports whether every dot-separated label of h is a number
// in decimal, octal or hex, as inet_aton reads them.
func looksNumeric(h string) bool {
	for _, l := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		l = strings.ToLower(l)
		if strings.HasPrefix(l, "0x") {
			l = l[2:]
			if l == "" || strings.Trim(l, "0123456789abcdef") != "" {
				return false
			}
			continue
		}
		if l == "" || strings.Trim(l, "0123456789") != "" {
			return false
		}
	}
	return true
}

// ParsePrefixes parses a comma-separated list of CIDR prefixes or single
// addresses.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q: want a CIDR prefix or an address", f)
			}
			ps = append(ps, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q: want a CIDR prefix or an address", f)
		}
		ps = append(ps, p.Masked())
	}
	return ps, nil
}

// Contains reports whether a is in one of ps.
func Contains(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Private are loopback and the private ranges: the default of the networks a
// fleet's own hosts live in.
const Private = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
