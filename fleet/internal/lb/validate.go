package lb

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/chatfleet/chatfleet"
)

var (
	hostIDRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
	regionRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
)

// maxExclude bounds the exclude list of a pick request.
const maxExclude = 1000

// ValidateHostID returns an EINVALID error naming field "id" unless id is 1 to
// 128 ASCII letters, digits, '.', '_', ':' or '-', starting with a letter or
// digit (an EC2 instance id, a host name).
func ValidateHostID(id string) error {
	if !hostIDRE.MatchString(id) {
		return invalid("id", "must be 1 to 128 ASCII letters, digits, '.', '_', ':' or '-', starting with a letter or digit")
	}
	return nil
}

// ValidateHost checks every field of a heartbeat and returns an EINVALID error
// naming the first wrong one, as its JSON name ("capacity.maxRooms"). LastSeen
// is not checked: the load balancer sets it.
func ValidateHost(h chatfleet.Host) error {
	if err := ValidateHostID(h.ID); err != nil {
		return err
	}
	if err := validateURL(h.APIURL, "http", "https"); err != nil {
		return invalid("apiUrl", err.Error())
	}
	if h.RoomHost == "" {
		return invalid("roomHost", "is required")
	}
	if len(h.RoomHost) > 253 || (net.ParseIP(h.RoomHost) == nil && !hostnameRE.MatchString(h.RoomHost)) {
		return invalid("roomHost", "must be a host name or an IP address, without scheme or port")
	}
	if h.RoomURL != "" {
		if err := validateURL(h.RoomURL, "ws", "wss", "http", "https"); err != nil {
			return invalid("roomUrl", err.Error())
		}
	}
	if h.PortMin < 1 || h.PortMin > 65535 {
		return invalid("portMin", "must be a port, 1 to 65535")
	}
	if h.PortMax < 1 || h.PortMax > 65535 {
		return invalid("portMax", "must be a port, 1 to 65535")
	}
	if h.PortMin > h.PortMax {
		return invalid("portMax", "is below portMin")
	}
	if h.Region != "" && !regionRE.MatchString(h.Region) {
		return invalid("region", "must be lower-case letters, digits and '-', like eu-west-1")
	}
	if h.Zone != "" && !regionRE.MatchString(h.Zone) {
		return invalid("zone", "must be lower-case letters, digits and '-', like eu-west-1a")
	}
	if h.Version == "" || len(h.Version) > 64 {
		return invalid("version", "must be 1 to 64 characters")
	}
	if h.Capacity.MaxRooms < 1 {
		return invalid("capacity.maxRooms", "must be at least 1")
	}
	if h.Capacity.MaxConns < 1 {
		return invalid("capacity.maxConns", "must be at least 1")
	}
	switch {
	case h.Load.Rooms < 0:
		return invalid("load.rooms", "must not be negative")
	case h.Load.Conns < 0:
		return invalid("load.conns", "must not be negative")
	case !(h.Load.MsgsPerSec >= 0): // also refuses NaN
		return invalid("load.msgsPerSec", "must not be negative")
	case !(h.Load.CPU >= 0):
		return invalid("load.cpu", "must not be negative")
	case h.Load.MemBytes < 0:
		return invalid("load.memBytes", "must not be negative")
	}
	if h.State != chatfleet.HostAccepting && h.State != chatfleet.HostDraining {
		return invalid("state", `must be "accepting" or "draining"`)
	}
	return nil
}

// validatePick checks a pick request.
func validatePick(req chatfleet.PickRequest) error {
	if req.Region != "" && !regionRE.MatchString(req.Region) {
		return invalid("region", "must be lower-case letters, digits and '-', like eu-west-1")
	}
	if len(req.Exclude) > maxExclude {
		return invalid("exclude", "holds more than 1000 host ids")
	}
	return nil
}

// validateURL checks that s is an absolute URL with one of schemes, a host,
// and no credentials, query or fragment.
func validateURL(s string, schemes ...string) error {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return errors.New("is required")
	case err != nil:
		return errors.New("is not a URL")
	case !slices.Contains(schemes, u.Scheme):
		return fmt.Errorf("must be an absolute URL with scheme %s", strings.Join(schemes, ", "))
	case u.Host == "" || u.Hostname() == "":
		return errors.New("has no host")
	case u.User != nil:
		return errors.New("must not carry credentials")
	case u.RawQuery != "" || u.Fragment != "":
		return errors.New("must not have a query or fragment")
	}
	return nil
}

func invalid(field, msg string) error {
	return chatfleet.Errorf(chatfleet.EINVALID, "field %q: %s", field, msg)
}
