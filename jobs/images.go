package jobs

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/distribution/reference"
)

// An ImagePattern is one parsed entry of ALLOWED_IMAGE_LIST.
//
// Patterns and images are both parsed and normalised by github.com/distribution/reference,
// the parser containerd and Docker use to decide where an image is pulled from, so a pattern
// means the same repository the runtime would pull: "alpine" is docker.io/library/alpine,
// "my-user/app" is docker.io/my-user/app, "index.docker.io/x" is docker.io/library/x, and a
// first part with a '.' or ':', "localhost", or an upper-case letter is a registry host
// ("Evil/x" is pulled from the host "Evil", never from Docker Hub).
//
// The normalised pattern is then matched part by part against the normalised image:
//   - name (registry/path): '*' matches any run of characters except '/', so it stays inside
//     one host or path component ("docker.io/library/*" allows alpine and alpine:3.20 but not
//     docker.io/library/x/y, "docker.io/alpine*" means docker.io/library/alpine* and does not
//     allow alpinehacker/evil); '**' matches any run including '/' ("custom.registry.io/**"
//     is everything on that registry). Everything else is literal.
//   - tag: a pattern without tag or digest allows every tag and digest of the repositories it
//     names. A pattern tag ('*' allowed) must match the image's tag; an image without tag or
//     digest has the tag "latest"; an image pinned by digest alone has no tag.
//   - digest: a pattern digest (exact, no '*') must equal the image's digest.
type ImagePattern struct {
	text   string
	name   *regexp.Regexp
	tag    *regexp.Regexp // nil: any tag
	digest string         // "": any digest
}

// starStandIn replaces '*' while the pattern goes through the reference parser: it is
// valid in a host, a path component and a tag, so the library normalises the pattern
// exactly like an image; afterwards it becomes '*' again.
const starStandIn = "x0starglob0x"

// ParseImagePatterns parses ALLOWED_IMAGE_LIST entries; blank entries are skipped. An entry
// that is no valid image reference once each '*' is read as a letter is refused.
func ParseImagePatterns(patterns []string) ([]ImagePattern, error) {
	out := make([]ImagePattern, 0, len(patterns))
	var errs []error
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		ip, err := parseImagePattern(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, ip)
	}
	return out, errors.Join(errs...)
}

func parseImagePattern(p string) (ImagePattern, error) {
	if strings.Contains(p, starStandIn) {
		return ImagePattern{}, fmt.Errorf("%q is not a valid image pattern: it contains the reserved text %q", p, starStandIn)
	}
	ref, err := reference.ParseNormalizedNamed(strings.ReplaceAll(p, "*", starStandIn))
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), starStandIn, "*")
		return ImagePattern{}, fmt.Errorf("%q is not a valid image pattern (an image reference in which '*' may stand for characters): %s", p, msg)
	}
	ip := ImagePattern{text: p, name: globRegexp(strings.ReplaceAll(ref.Name(), starStandIn, "*"), true)}
	if t, ok := ref.(reference.Tagged); ok {
		ip.tag = globRegexp(strings.ReplaceAll(t.Tag(), starStandIn, "*"), false)
	}
	if d, ok := ref.(reference.Digested); ok {
		ip.digest = d.Digest().String()
	}
	return ip, nil
}

// globRegexp turns a glob into an anchored regexp: '**' (when doubleStar) matches anything,
// '*' anything but '/', every other character itself. Go's regexp runs in linear time.
func globRegexp(glob string, doubleStar bool) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(glob); {
		switch {
		case doubleStar && strings.HasPrefix(glob[i:], "**"):
			b.WriteString(".*")
			i += 2
		case glob[i] == '*':
			b.WriteString("[^/]*")
			i++
		default:
			j := i
			for j < len(glob) && glob[j] != '*' {
				j++
			}
			b.WriteString(regexp.QuoteMeta(glob[i:j]))
			i = j
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// String is the pattern as written.
func (p ImagePattern) String() string { return p.text }

// Allows reports whether the pattern allows the parsed image.
func (p ImagePattern) Allows(image reference.Named) bool {
	if !p.name.MatchString(image.Name()) {
		return false
	}
	if p.tag != nil {
		tag := ""
		if t, ok := image.(reference.Tagged); ok {
			tag = t.Tag()
		} else if _, digested := image.(reference.Digested); !digested {
			tag = "latest"
		}
		if tag == "" || !p.tag.MatchString(tag) {
			return false
		}
	}
	if p.digest != "" {
		d, ok := image.(reference.Digested)
		if !ok || d.Digest().String() != p.digest {
			return false
		}
	}
	return true
}

// ParseImage parses a task image as the container runtime will (see ImagePattern); an
// image that does not parse, such as one with an upper-case repository name, is refused.
func ParseImage(image string) (reference.Named, error) {
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return nil, fmt.Errorf("image %q is not a valid image reference: %w", image, err)
	}
	return ref, nil
}

// ImageAllowed parses image and reports whether one of the patterns (ALLOWED_IMAGE_LIST,
// see ImagePattern for their meaning) allows it; no patterns allow every valid image. An
// invalid image or pattern is an error; a list with an invalid pattern allows nothing.
func ImageAllowed(patterns []string, image string) (bool, error) {
	ref, err := ParseImage(image)
	if err != nil {
		return false, err
	}
	ps, err := ParseImagePatterns(patterns)
	if err != nil {
		return false, fmt.Errorf("allowed image list: %w", err)
	}
	if len(ps) == 0 && len(patterns) == 0 {
		return true, nil
	}
	for _, p := range ps {
		if p.Allows(ref) {
			return true, nil
		}
	}
	return false, nil
}
