package config

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ConfigPath is where the job config lives at every level.
const ConfigPath = "job/config.yaml"

// ErrInvalid is wrapped by Load when a job config exists but does not parse or validate.
var ErrInvalid = errors.New("invalid job config")

// Loaded is a parsed config and where it came from. It is shared by the cache:
// callers must not modify it.
type Loaded struct {
	Config *Config
	Level  Level
	// Raw is the file as read; event records keep it so that recovery runs the same config.
	Raw []byte
}

// Loader finds job/config.yaml at the service, stage, then project level and
// caches parsed results. Configs read at a commit never change and are kept
// (up to a bounded number); configs read without a commit ("latest"), which
// includes every project-level config (Ref.At), expire after a short TTL.
type Loader struct {
	src       Source
	now       func() time.Time
	latestTTL time.Duration
	size      int

	mu       sync.Mutex
	entries  map[Ref]*list.Element // of *cacheEntry
	lru      *list.List            // front = most recently used
	inflight map[Ref]*loadCall
}

type cacheEntry struct {
	ref     Ref
	loaded  *Loaded
	expires time.Time // zero: never
}

type loadCall struct {
	done   chan struct{}
	loaded *Loaded
	err    error
}

// LoaderOption configures NewLoader.
type LoaderOption func(*Loader)

// WithClock replaces time.Now (for tests).
func WithClock(now func() time.Time) LoaderOption { return func(l *Loader) { l.now = now } }

// DefaultCommitlessTTL is how long a config loaded without a commit ("latest") is cached.
const DefaultCommitlessTTL = 10 * time.Second

// WithCommitlessTTL sets how long configs loaded without a commit are cached (default
// DefaultCommitlessTTL; 0 disables caching them).
func WithCommitlessTTL(d time.Duration) LoaderOption { return func(l *Loader) { l.latestTTL = d } }

// WithCacheSize bounds the number of cached configs (default 256; 0 disables the cache).
func WithCacheSize(n int) LoaderOption { return func(l *Loader) { l.size = n } }

// NewLoader returns a Loader reading from src.
func NewLoader(src Source, opts ...LoaderOption) *Loader {
	l := &Loader{
		src:       src,
		now:       time.Now,
		latestTTL: DefaultCommitlessTTL,
		size:      256,
		entries:   map[Ref]*list.Element{},
		lru:       list.New(),
		inflight:  map[Ref]*loadCall{},
	}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Load returns the job config for ref. Concurrent loads of the same ref share
// one fetch. Not found at any level wraps ErrNotFound; a config that does not
// parse wraps ErrInvalid.
func (l *Loader) Load(ctx context.Context, ref Ref) (*Loaded, error) {
	for {
		l.mu.Lock()
		if ld, ok := l.cached(ref); ok {
			l.mu.Unlock()
			return ld, nil
		}
		if c, ok := l.inflight[ref]; ok {
			l.mu.Unlock()
			select {
			case <-c.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			// The leader's context may have been cancelled while ours is alive: retry.
			if c.err != nil && isContextErr(c.err) && ctx.Err() == nil {
				continue
			}
			return c.loaded, c.err
		}
		c := &loadCall{done: make(chan struct{})}
		l.inflight[ref] = c
		l.mu.Unlock()

		c.loaded, c.err = l.load(ctx, ref)

		l.mu.Lock()
		delete(l.inflight, ref)
		if c.err == nil {
			l.store(ref, c.loaded)
		}
		l.mu.Unlock()
		close(c.done)
		return c.loaded, c.err
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// cached must be called with l.mu held.
func (l *Loader) cached(ref Ref) (*Loaded, bool) {
	el, ok := l.entries[ref]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !e.expires.IsZero() && !l.now().Before(e.expires) {
		l.lru.Remove(el)
		delete(l.entries, ref)
		return nil, false
	}
	l.lru.MoveToFront(el)
	return e.loaded, true
}

// store must be called with l.mu held.
func (l *Loader) store(ref Ref, ld *Loaded) {
	if l.size <= 0 {
		return
	}
	var expires time.Time
	if ref.At(ld.Level).CommitID == "" {
		if l.latestTTL <= 0 {
			return
		}
		expires = l.now().Add(l.latestTTL)
	}
	if el, ok := l.entries[ref]; ok {
		el.Value = &cacheEntry{ref: ref, loaded: ld, expires: expires}
		l.lru.MoveToFront(el)
		return
	}
	l.entries[ref] = l.lru.PushFront(&cacheEntry{ref: ref, loaded: ld, expires: expires})
	for l.lru.Len() > l.size {
		oldest := l.lru.Back()
		l.lru.Remove(oldest)
		delete(l.entries, oldest.Value.(*cacheEntry).ref)
	}
}

func (l *Loader) load(ctx context.Context, ref Ref) (*Loaded, error) {
	for _, level := range []Level{LevelService, LevelStage, LevelProject} {
		raw, err := l.src.Get(ctx, ref, level, ConfigPath)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			// Falling back to another level on a transient error could run the
			// wrong config, so fail instead.
			return nil, fmt.Errorf("reading %s at %s level: %w", ConfigPath, level, err)
		}
		loaded, err := NewLoaded(raw, level)
		if err != nil {
			return nil, fmt.Errorf("%w: %s at %s level (%s): %w", ErrInvalid, ConfigPath, level, describeRef(ref, level), err)
		}
		return loaded, nil
	}
	return nil, fmt.Errorf("%s %w at service (%s) or stage (%s) level%s, or at project (%s) level%s",
		ConfigPath, ErrNotFound, describeRef(ref, LevelService), describeRef(ref, LevelStage), atCommit(ref),
		describeRef(ref, LevelProject), atCommit(ref.At(LevelProject)))
}

// NewLoaded parses raw as found at level; recovery uses it to rebuild what a load returned.
func NewLoaded(raw []byte, level Level) (*Loaded, error) {
	cfg, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	return &Loaded{Config: cfg, Level: level, Raw: raw}, nil
}

func describeRef(ref Ref, level Level) string {
	switch level {
	case LevelService:
		return ref.Project + "/" + ref.Stage + "/" + ref.Service
	case LevelStage:
		return ref.Project + "/" + ref.Stage
	}
	return ref.Project
}

func atCommit(ref Ref) string {
	if ref.CommitID == "" {
		return " (latest)"
	}
	return " at commit " + ref.CommitID
}
