// Package hostinfo tells a chatserver who it is: its host id, the public host
// name clients reach its rooms at, its region and zone. On EC2 it asks the
// instance metadata service (IMDSv2); elsewhere it takes them from the
// environment, defaulting to the machine's host name.
package hostinfo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/chatfleet/chatfleet/internal/envconf"
)

// Config says where to learn the host's identity. Zero fields take their
// defaults; the string fields, when set, win over what IMDS says.
type Config struct {
	IMDS         bool          // ask the EC2 instance metadata service (IMDS=1)
	IMDSEndpoint string        // IMDS base URL (IMDS_ENDPOINT); implies IMDS; http://169.254.169.254 if empty
	HostID       string        // HOST_ID
	PublicHost   string        // PUBLIC_HOST: host name or IP clients use for room ports
	Region       string        // REGION
	Zone         string        // ZONE
	Timeout      time.Duration // bounds Discover; 5s if zero
}

// Info is who the host is.
type Info struct {
	ID         string `json:"id"`
	PublicHost string `json:"publicHost"`
	Region     string `json:"region,omitempty"`
	Zone       string `json:"zone,omitempty"`
	Source     string `json:"source"` // "imds" or "env"
}

// ConfigFromEnv reads IMDS, IMDS_ENDPOINT, HOST_ID, PUBLIC_HOST, REGION and
// ZONE with getenv (os.Getenv in production). It returns an error if IMDS is
// not a boolean.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	r := envconf.New(getenv)
	c := Config{
		IMDS:         r.Bool("IMDS"), // strconv.ParseBool, as ever: IMDS=true keeps working
		IMDSEndpoint: r.Str("IMDS_ENDPOINT", ""),
		HostID:       r.Str("HOST_ID", ""),
		PublicHost:   r.Str("PUBLIC_HOST", ""),
		Region:       r.Str("REGION", ""),
		Zone:         r.Str("ZONE", ""),
	}
	if err := r.Err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Discover returns who this host is. With IMDS enabled it reads instance-id,
// placement/availability-zone, placement/region and the first of
// public-hostname, public-ipv4 and local-ipv4 (a host without a public
// address is reached on its private one), and fails if the service cannot be
// reached within the timeout: a host told it is on EC2 must not make up a
// name. Without IMDS the id and public host default to the host name.
func Discover(ctx context.Context, cfg Config) (Info, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	info := Info{ID: cfg.HostID, PublicHost: cfg.PublicHost, Region: cfg.Region, Zone: cfg.Zone, Source: "env"}
	if cfg.IMDS || cfg.IMDSEndpoint != "" {
		ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		md, err := fromIMDS(ctx, cfg.IMDSEndpoint)
		if err != nil {
			return Info{}, fmt.Errorf("hostinfo: instance metadata: %w", err)
		}
		info.Source = "imds"
		info.ID = cmp.Or(info.ID, md.ID)
		info.PublicHost = cmp.Or(info.PublicHost, md.PublicHost)
		info.Region = cmp.Or(info.Region, md.Region)
		info.Zone = cmp.Or(info.Zone, md.Zone)
	}
	if info.ID == "" || info.PublicHost == "" {
		name, err := os.Hostname()
		if err != nil {
			return Info{}, fmt.Errorf("hostinfo: host name: %w", err)
		}
		info.ID = cmp.Or(info.ID, name)
		info.PublicHost = cmp.Or(info.PublicHost, name)
	}
	return info, nil
}

// fromIMDS reads the instance's identity from IMDSv2 at endpoint (the
// default if empty). It refuses the IMDSv1 fallback: without a session token
// it fails.
func fromIMDS(ctx context.Context, endpoint string) (Info, error) {
	client := imds.New(imds.Options{
		Endpoint:       endpoint,
		EnableFallback: aws.FalseTernary,
	})
	get := func(path string) (string, error) {
		out, err := client.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
		if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		defer out.Content.Close()
		b, err := io.ReadAll(io.LimitReader(out.Content, 4096))
		if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	var info Info
	var err error
	if info.ID, err = get("instance-id"); err != nil {
		return Info{}, err
	}
	if info.Zone, err = get("placement/availability-zone"); err != nil {
		return Info{}, err
	}
	if info.Region, err = get("placement/region"); notFound(err) {
		// Older metadata versions: the zone is the region and a letter.
		info.Region = strings.TrimRight(info.Zone, "abcdefghijklmnopqrstuvwxyz")
	} else if err != nil {
		return Info{}, err
	}
	for _, path := range []string{"public-hostname", "public-ipv4", "local-ipv4"} {
		info.PublicHost, err = get(path)
		if err == nil && info.PublicHost != "" {
			break
		}
		if err != nil && !notFound(err) {
			return Info{}, err
		}
	}
	if info.PublicHost == "" {
		return Info{}, errors.New("no public-hostname, public-ipv4 or local-ipv4")
	}
	return info, nil
}

// notFound reports whether err is IMDS answering 404: the instance has no such
// metadata (e.g. no public address).
func notFound(err error) bool {
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == 404
}
