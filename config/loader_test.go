package config

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memSource is an in-memory Source keyed by level and path; it counts Gets and
// can block them to test request coalescing.
type memSource struct {
	files map[Level]map[string]string
	gets  atomic.Int64
	gate  chan struct{} // when set, Get waits for it
	err   error         // when set, Get fails with it
}

func (m *memSource) Get(ctx context.Context, _ Ref, level Level, p string) ([]byte, error) {
	m.gets.Add(1)
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	c, ok := m.files[level][p]
	if !ok {
		return nil, fmt.Errorf("%s: %w", p, ErrNotFound)
	}
	return []byte(c), nil
}

func (m *memSource) List(_ context.Context, _ Ref, level Level, dir string) ([]string, error) {
	var out []string
	for p := range m.files[level] {
		if strings.HasPrefix(p, dir+"/") {
			out = append(out, p)
		}
	}
	return out, nil
}

const minimalConfig = "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: e}]\n    tasks: [{name: t, image: i}]\n"

func TestLoaderLevels(t *testing.T) {
	stageCfg := strings.Replace(minimalConfig, "name: a", "name: stage-action", 1)
	tests := []struct {
		name      string
		files     map[Level]map[string]string
		wantLevel Level
		wantErr   error
		errSubstr []string
	}{
		{"service wins", map[Level]map[string]string{
			LevelService: {ConfigPath: minimalConfig}, LevelStage: {ConfigPath: stageCfg}, LevelProject: {ConfigPath: "garbage: ["},
		}, LevelService, nil, nil},
		{"stage fallback", map[Level]map[string]string{
			LevelStage: {ConfigPath: stageCfg}, LevelProject: {ConfigPath: minimalConfig},
		}, LevelStage, nil, nil},
		{"project fallback", map[Level]map[string]string{
			LevelProject: {ConfigPath: minimalConfig},
		}, LevelProject, nil, nil},
		{"not found", nil, 0, ErrNotFound,
			[]string{"at service (sockshop/dev/carts) or stage (sockshop/dev) level at commit c1, or at project (sockshop) level (latest)"}},
		{"invalid at stage", map[Level]map[string]string{
			LevelStage: {ConfigPath: "apiVersion: v2\nactions:\n  - name: a\n    bogus: 1\n"},
		}, 0, ErrInvalid, []string{"job/config.yaml at stage level (sockshop/dev)", `line 4: unknown field "bogus"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLoader(&memSource{files: tt.files})
			ld, err := l.Load(context.Background(), Ref{Project: "sockshop", Stage: "dev", Service: "carts", CommitID: "c1"})
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				for _, s := range tt.errSubstr {
					assert.Contains(t, err.Error(), s)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantLevel, ld.Level)
			assert.Equal(t, tt.files[tt.wantLevel][ConfigPath], string(ld.Raw))
			assert.NotEmpty(t, ld.Config.Actions)
		})
	}
}

func TestLoaderSourceErrorDoesNotFallBack(t *testing.T) {
	src := &memSource{err: errors.New("connection refused"),
		files: map[Level]map[string]string{LevelProject: {ConfigPath: minimalConfig}}}
	_, err := NewLoader(src).Load(context.Background(), Ref{Project: "p", Stage: "s", Service: "x"})
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrNotFound)
	assert.Contains(t, err.Error(), "service level: connection refused")
	assert.EqualValues(t, 1, src.gets.Load())
}

func TestLoaderCache(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	src := &memSource{files: map[Level]map[string]string{LevelService: {ConfigPath: minimalConfig}}}
	l := NewLoader(src, WithClock(clock), WithCommitlessTTL(10*time.Second), WithCacheSize(2))
	ctx := context.Background()
	ref := func(commit string) Ref { return Ref{Project: "p", Stage: "s", Service: "x", CommitID: commit} }
	load := func(r Ref) *Loaded {
		t.Helper()
		ld, err := l.Load(ctx, r)
		require.NoError(t, err)
		return ld
	}

	// A commit is cached regardless of time.
	a := load(ref("c1"))
	now = now.Add(time.Hour)
	assert.Same(t, a, load(ref("c1")))
	assert.EqualValues(t, 1, src.gets.Load())

	// Latest expires after the TTL.
	latest := load(ref(""))
	now = now.Add(9 * time.Second)
	assert.Same(t, latest, load(ref("")))
	assert.EqualValues(t, 2, src.gets.Load())
	now = now.Add(time.Second)
	assert.NotSame(t, latest, load(ref("")))
	assert.EqualValues(t, 3, src.gets.Load())

	// Bounded: with size 2, c1 is now the least recently used and is evicted by c2.
	load(ref("c2"))
	gets := src.gets.Load()
	load(ref("c1"))
	assert.Equal(t, gets+1, src.gets.Load(), "c1 was evicted")

	// Errors are not cached.
	missing := Ref{Project: "q", Stage: "s", Service: "x", CommitID: "c1"}
	src2 := &memSource{}
	l2 := NewLoader(src2)
	_, err := l2.Load(ctx, missing)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = l2.Load(ctx, missing)
	require.ErrorIs(t, err, ErrNotFound)
	assert.EqualValues(t, 6, src2.gets.Load())
}

// TestLoaderCacheProjectLevel: a project-level config is its latest version whatever the
// event's commit, so it expires like a config read without a commit.
func TestLoaderCacheProjectLevel(t *testing.T) {
	now := time.Unix(1000, 0)
	src := &memSource{files: map[Level]map[string]string{LevelProject: {ConfigPath: minimalConfig}}}
	l := NewLoader(src, WithClock(func() time.Time { return now }), WithCommitlessTTL(10*time.Second))
	ref := Ref{Project: "p", Stage: "s", Service: "x", CommitID: "c1"}
	first, err := l.Load(context.Background(), ref)
	require.NoError(t, err)
	require.EqualValues(t, 3, src.gets.Load(), "service, stage, project")

	now = now.Add(9 * time.Second)
	ld, err := l.Load(context.Background(), ref)
	require.NoError(t, err)
	assert.Same(t, first, ld)
	assert.EqualValues(t, 3, src.gets.Load())

	now = now.Add(time.Second)
	ld, err = l.Load(context.Background(), ref)
	require.NoError(t, err)
	assert.NotSame(t, first, ld)
	assert.EqualValues(t, 6, src.gets.Load())
}

func TestLoaderCoalescesConcurrentLoads(t *testing.T) {
	src := &memSource{gate: make(chan struct{}), files: map[Level]map[string]string{LevelService: {ConfigPath: minimalConfig}}}
	l := NewLoader(src)
	ref := Ref{Project: "p", Stage: "s", Service: "x", CommitID: "c"}
	const n = 20
	var wg sync.WaitGroup
	results := make([]*Loaded, n)
	started := make(chan struct{}, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started <- struct{}{}
			ld, err := l.Load(context.Background(), ref)
			assert.NoError(t, err)
			results[i] = ld
		}()
	}
	for range n {
		<-started
	}
	// Wait until the leader is inside Get, then release it.
	for src.gets.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(src.gate)
	wg.Wait()
	assert.EqualValues(t, 1, src.gets.Load(), "one fetch for all concurrent loads")
	for _, r := range results {
		assert.Same(t, results[0], r)
	}
}

func TestLoaderWaiterContext(t *testing.T) {
	src := &memSource{gate: make(chan struct{}), files: map[Level]map[string]string{LevelService: {ConfigPath: minimalConfig}}}
	l := NewLoader(src)
	ref := Ref{Project: "p", Stage: "s", Service: "x", CommitID: "c"}
	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := l.Load(leaderCtx, ref)
		leaderErr <- err
	}()
	for src.gets.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	waiterDone := make(chan *Loaded, 1)
	go func() {
		ld, err := l.Load(context.Background(), ref)
		assert.NoError(t, err)
		waiterDone <- ld
	}()
	// The leader gives up; the waiter must retry on its own rather than fail.
	cancelLeader()
	require.ErrorIs(t, <-leaderErr, context.Canceled)
	close(src.gate)
	assert.NotNil(t, <-waiterDone)
}

func BenchmarkLoaderCached(b *testing.B) {
	src := &memSource{files: map[Level]map[string]string{LevelService: {ConfigPath: minimalConfig}}}
	l := NewLoader(src)
	ref := Ref{Project: "p", Stage: "s", Service: "x", CommitID: "c"}
	ctx := context.Background()
	if _, err := l.Load(ctx, ref); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Load(ctx, ref); err != nil {
				b.Fatal(err)
			}
		}
	})
}
