package records

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keptn-contrib/job-executor-service/jobs"
	"github.com/keptn-contrib/job-executor-service/jobs/records/recordstest"
)

// newStore is a store over client, listing through the metadata view of the same ConfigMaps.
func newStore(client *fake.Clientset, namespace, instance string, key []byte) *Store {
	return New(client, recordstest.NewMetadata(client), namespace, instance, key)
}

// unfinished collects what s.Unfinished lists.
func unfinished(t *testing.T, s *Store) []Record {
	t.Helper()
	var out []Record
	require.NoError(t, s.Unfinished(context.Background(), func(r Record) error { out = append(out, r); return nil }))
	return out
}

func TestRecords(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	s := newStore(client, "keptn", "pod-a", nil)
	a := Record{Name: jobs.RecordName("src", "a"), Event: []byte(`{"id":"a"}`), Config: []byte("apiVersion: v2"), Level: "stage"}
	b := Record{Name: jobs.RecordName("src", "b"), Event: []byte(`{"id":"b"}`), Config: []byte("apiVersion: v2"), Level: "service"}
	assert.NotEqual(t, a.Name, b.Name)

	existing, err := s.Create(ctx, a)
	require.NoError(t, err)
	assert.Nil(t, existing, "new record")
	_, err = s.Create(ctx, b)
	require.NoError(t, err)

	again := a
	again.Event = []byte(`{"id":"changed"}`)
	existing, err = s.Create(ctx, again)
	require.NoError(t, err)
	require.NotNil(t, existing, "second delivery finds the first")
	assert.Equal(t, a.Event, existing.Event, "the stored record is not overwritten")
	assert.Equal(t, "stage", existing.Level)

	cm, err := client.CoreV1().ConfigMaps("keptn").Get(ctx, a.Name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.True(t, *cm.Immutable)

	for _, r := range unfinished(t, s) {
		assert.Equal(t, StartedUnrecorded, r.Started, "a new record says nothing of .started")
	}
	require.NoError(t, s.MarkStarted(ctx, b.Name, false))
	require.NoError(t, s.MarkStarted(ctx, a.Name, true))
	open := unfinished(t, s)
	require.Len(t, open, 2)

	finishedAt := time.Unix(1_700_000_000, 0)
	require.NoError(t, s.MarkFinished(ctx, a.Name, finishedAt))
	open = unfinished(t, s)
	require.Len(t, open, 1)
	assert.Equal(t, b.Name, open[0].Name)
	assert.Equal(t, StartedUndelivered, open[0].Started)

	existing, err = s.Create(ctx, a)
	require.NoError(t, err)
	assert.True(t, existing.Finished)
	assert.Equal(t, StartedDelivered, existing.Started)
	assert.Equal(t, finishedAt, existing.FinishedAt)

	n, err := s.Prune(ctx, finishedAt.Add(30*time.Minute), time.Hour, 10)
	require.NoError(t, err)
	assert.Zero(t, n, "younger than the retention")
	n, err = s.Prune(ctx, finishedAt.Add(2*time.Hour), time.Hour, 10)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, err = client.CoreV1().ConfigMaps("keptn").Get(ctx, a.Name, metav1.GetOptions{})
	assert.Error(t, err, "pruned")
	_, err = client.CoreV1().ConfigMaps("keptn").Get(ctx, b.Name, metav1.GetOptions{})
	assert.NoError(t, err, "unfinished records are never pruned")
}

func TestRecordsClaim(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	a := newStore(client, "keptn", "pod-a", nil)
	b := newStore(client, "keptn", "pod-b", nil)
	c := newStore(client, "keptn", "pod-c", nil)
	for _, s := range []*Store{a, b, c} {
		s.now = clock
	}
	_, err := a.Create(ctx, Record{Name: jobs.RecordName("src", "1"), Event: []byte("{}"), Level: "service"})
	require.NoError(t, err)
	require.NoError(t, a.renew(ctx), "pod-a is alive")

	recs := unfinished(t, b)
	require.Len(t, recs, 1)
	assert.Equal(t, "pod-a", recs[0].Owner)
	mine, err := a.Claim(ctx, recs[0])
	require.NoError(t, err)
	assert.True(t, mine, "an instance owns what it created")
	mine, err = b.Claim(ctx, recs[0])
	require.NoError(t, err)
	assert.False(t, mine, "the owner's lease is fresh")

	now = now.Add(DefaultLeaseDuration + time.Second) // pod-a stopped renewing
	mine, err = b.Claim(ctx, recs[0])
	require.NoError(t, err)
	assert.True(t, mine, "an expired owner's record is taken over")
	recs = unfinished(t, c)
	assert.Equal(t, "pod-b", recs[0].Owner)

	// That a claim based on an outdated read loses needs a real API server (the fake
	// clientset ignores resourceVersion): e2e/records_test.go.

	// A graceful stop deletes the lease: the records are free at once.
	hctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { b.Heartbeat(hctx, func(err error) { t.Error(err) }); close(done) }()
	require.Eventually(t, func() bool {
		_, err := client.CoordinationV1().Leases("keptn").Get(ctx, jobs.LeaseName("pod-b"), metav1.GetOptions{})
		return err == nil
	}, 10*time.Second, 5*time.Millisecond)
	mine, err = c.Claim(ctx, recs[0])
	require.NoError(t, err)
	assert.False(t, mine, "pod-b is alive")
	stop()
	<-done
	recs = unfinished(t, c)
	mine, err = c.Claim(ctx, recs[0])
	require.NoError(t, err)
	assert.True(t, mine, "pod-b is gone")
}

// TestRecordsSignature: a record verifies only with the key it was created with and only as
// stored; a ConfigMap planted with the record labels but no (or a forged) signature does not.
func TestRecordsSignature(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	keyA, keyB := []byte("key-a-0123456789abcdef0123456789ab"), []byte("key-b-0123456789abcdef0123456789ab")
	a := newStore(client, "keptn", "pod-a", keyA)
	rec := Record{Name: jobs.RecordName("src", "1"), Event: []byte(`{"id":"1"}`), Config: []byte("apiVersion: v2"), Level: "service"}
	_, err := a.Create(ctx, rec)
	require.NoError(t, err)
	cm, err := client.CoreV1().ConfigMaps("keptn").Get(ctx, rec.Name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Len(t, cm.Annotations[AnnotationSignature], 64, "hex HMAC-SHA256")

	recs := unfinished(t, a)
	require.Len(t, recs, 1)
	assert.Empty(t, recs[0].Event, "listed: metadata only")
	assert.ErrorIs(t, a.Verify(recs[0]), ErrBadSignature, "the signature covers the data")
	loaded, err := a.Load(ctx, recs[0].Name)
	require.NoError(t, err)
	stored := *loaded
	assert.NoError(t, a.Verify(stored), "same key")
	assert.ErrorIs(t, newStore(client, "keptn", "pod-b", keyB).Verify(stored), ErrBadSignature, "other key")
	assert.ErrorIs(t, newStore(client, "other-ns", "pod-a", keyA).Verify(stored), ErrBadSignature, "other namespace")
	assert.NoError(t, newStore(client, "keptn", "pod-a", nil).Verify(stored), "no key: every record is trusted")

	for name, alter := range map[string]func(r *Record){
		"name":   func(r *Record) { r.Name = jobs.RecordName("src", "2") },
		"event":  func(r *Record) { r.Event = []byte(`{"id":"2"}`) },
		"config": func(r *Record) { r.Config = []byte("apiVersion: v2\nactions: []") },
		"level":  func(r *Record) { r.Level = "project" },
		// Moving bytes between fields keeps the concatenation: length prefixes catch it.
		"boundary": func(r *Record) { r.Event, r.Config = []byte(`{"id":"1"}a`), []byte("piVersion: v2") },
		"signature": func(r *Record) {
			r.signature = r.signature[:len(r.signature)-2] + map[bool]string{true: "00", false: "ff"}[r.signature[len(r.signature)-2:] != "00"]
		},
		"not hex": func(r *Record) { r.signature = "zz" },
	} {
		altered := stored
		alter(&altered)
		assert.ErrorIs(t, a.Verify(altered), ErrBadSignature, name)
	}

	// Planted: the labels of a record, no signature annotation.
	planted := cm.DeepCopy()
	planted.Name, planted.ResourceVersion = jobs.RecordName("src", "planted"), ""
	delete(planted.Annotations, AnnotationSignature)
	_, err = client.CoreV1().ConfigMaps("keptn").Create(ctx, planted, metav1.CreateOptions{})
	require.NoError(t, err)
	// Planted with the signature of another record copied over.
	copied := cm.DeepCopy()
	copied.Name, copied.ResourceVersion = jobs.RecordName("src", "copied"), ""
	_, err = client.CoreV1().ConfigMaps("keptn").Create(ctx, copied, metav1.CreateOptions{})
	require.NoError(t, err)
	recs = unfinished(t, a)
	require.Len(t, recs, 3)
	for _, listed := range recs {
		r, err := a.Load(ctx, listed.Name)
		require.NoError(t, err)
		switch r.Name {
		case planted.Name:
			assert.ErrorIs(t, a.Verify(*r), ErrUnsigned)
		case copied.Name:
			assert.ErrorIs(t, a.Verify(*r), ErrBadSignature)
		default:
			assert.NoError(t, a.Verify(*r))
		}
	}

	// Unsigned stores sign nothing.
	_, err = newStore(client, "keptn", "pod-a", nil).Create(ctx, Record{Name: jobs.RecordName("src", "unsigned"), Event: []byte("{}"), Level: "service"})
	require.NoError(t, err)
	cm, err = client.CoreV1().ConfigMaps("keptn").Get(ctx, jobs.RecordName("src", "unsigned"), metav1.GetOptions{})
	require.NoError(t, err)
	assert.NotContains(t, cm.Annotations, AnnotationSignature)
}

// TestRecordsListMetadataInPages: finding unfinished records and pruning finished ones list
// metadata only, a page at a time, never the records' data.
func TestRecordsListMetadataInPages(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	meta := recordstest.NewMetadata(client)
	s := New(client, meta, "keptn", "pod-a", nil)
	s.pageSize = 2
	finishedAt := time.Unix(1_700_000_000, 0)
	for i := range 12 {
		name := jobs.RecordName("src", fmt.Sprint(i))
		_, err := s.Create(ctx, Record{Name: name, Event: []byte(`{"id":"x"}`), Config: []byte("apiVersion: v2"), Level: "service"})
		require.NoError(t, err)
		if i >= 7 {
			require.NoError(t, s.MarkFinished(ctx, name, finishedAt))
		}
	}
	client.ClearActions()

	assert.Len(t, unfinished(t, s), 7)
	n, err := s.Prune(ctx, finishedAt.Add(2*time.Hour), time.Hour, 10)
	require.NoError(t, err)
	assert.Equal(t, 5, n)

	for _, a := range client.Actions() {
		assert.NotEqual(t, "list", a.GetVerb(), "records listed with their data")
	}
	lists := meta.Lists()
	assert.Len(t, lists, 4+3, "7 unfinished and 5 finished records in pages of 2")
	for _, l := range lists {
		assert.Equal(t, int64(2), l.Limit)
	}
}

// TestRecordsPruneKeepsNewest: beyond the retention age, at most keep finished records stay:
// the newest. Unfinished records are never pruned, however many there are.
func TestRecordsPruneKeepsNewest(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	s := newStore(client, "keptn", "pod-a", nil)
	t0 := time.Unix(1_700_000_000, 0)
	create := func(id string) string {
		name := jobs.RecordName("src", id)
		_, err := s.Create(ctx, Record{Name: name, Event: []byte(`{}`), Level: "service"})
		require.NoError(t, err)
		return name
	}
	var finished []string
	for i := range 6 {
		name := create(fmt.Sprint("finished-", i))
		require.NoError(t, s.MarkFinished(ctx, name, t0.Add(time.Duration(i)*time.Minute)))
		finished = append(finished, name)
	}
	// Labelled finished without a time (planted, or patched by hand): the oldest of all.
	noTime := create("no-time")
	_, err := client.CoreV1().ConfigMaps("keptn").Patch(ctx, noTime, types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"`+LabelFinished+`":"true"}}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	for i := range 5 {
		create(fmt.Sprint("unfinished-", i))
	}

	n, err := s.Prune(ctx, t0.Add(10*time.Minute), time.Hour, 3)
	require.NoError(t, err)
	assert.Equal(t, 4, n, "the three oldest and the one without a time")
	cms, err := client.CoreV1().ConfigMaps("keptn").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	var left []string
	for _, cm := range cms.Items {
		if cm.Labels[LabelFinished] == "true" {
			left = append(left, cm.Name)
		}
	}
	assert.ElementsMatch(t, finished[3:], left)
	assert.Len(t, unfinished(t, s), 5)

	n, err = s.Prune(ctx, t0.Add(10*time.Minute), time.Hour, 3)
	require.NoError(t, err)
	assert.Zero(t, n, "within both bounds")
}

// TestRecordsActions: a record with the matched actions keeps their indices and the config
// hash, and its signature covers them: changing either, or passing it off as a record with a
// whole config, fails verification.
func TestRecordsActions(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	s := newStore(client, "keptn", "pod-a", []byte("key-a-0123456789abcdef0123456789ab"))
	rec := Record{Name: jobs.RecordName("src", "1"), Event: []byte(`{"id":"1"}`), Config: []byte(`{"apiVersion":"v2"}`),
		ActionIndex: []int{1, 3}, ConfigHash: "0123456789abcdef", Level: "service"}
	_, err := s.Create(ctx, rec)
	require.NoError(t, err)
	stored, err := s.Load(ctx, rec.Name)
	require.NoError(t, err)
	assert.Equal(t, rec.Config, stored.Config)
	assert.Equal(t, rec.ActionIndex, stored.ActionIndex)
	assert.Equal(t, rec.ConfigHash, stored.ConfigHash)
	require.NoError(t, s.Verify(*stored))
	for name, alter := range map[string]func(r *Record){
		"indices":      func(r *Record) { r.ActionIndex = []int{0, 3} },
		"config hash":  func(r *Record) { r.ConfigHash = "fedcba9876543210" },
		"whole config": func(r *Record) { r.ActionIndex, r.ConfigHash = nil, "" },
	} {
		altered := *stored
		alter(&altered)
		assert.ErrorIs(t, s.Verify(altered), ErrBadSignature, name)
	}
}

// TestRecordsTooLarge: a record whose data would exceed what a ConfigMap holds is refused
// with ErrTooLarge before the API server is asked; one that just fits is stored.
func TestRecordsTooLarge(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	s := newStore(client, "keptn", "pod-a", nil)
	rec := Record{Name: jobs.RecordName("src", "fits"), Event: make([]byte, MaxEventBytes), ActionIndex: []int{0}, ConfigHash: "0123456789abcdef", Level: "service"}
	rest := len(rec.Level) + len("0") + len(rec.ConfigHash)
	rec.Config = make([]byte, ConfigReserve-rest)
	_, err := s.Create(ctx, rec)
	require.NoError(t, err, "MaxEventBytes and ConfigReserve fill a ConfigMap exactly")

	rec.Name, rec.Config = jobs.RecordName("src", "too-large"), make([]byte, ConfigReserve-rest+1)
	client.ClearActions()
	_, err = s.Create(ctx, rec)
	require.ErrorIs(t, err, ErrTooLarge)
	assert.Contains(t, err.Error(), "at most 1048576 bytes")
	assert.Empty(t, client.Actions(), "the API server is not asked")
}

// TestRecordContextLabel: a record carries its Keptn context as a label, sanitised (the
// context is the event sender's), so that the status index finds it.
func TestRecordContextLabel(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	s := newStore(client, "keptn", "pod-a", nil)
	for name, tc := range map[string]struct{ context, label string }{
		"uuid":    {"138f7bf1-f027-42c4-b705-9033b5f5871e", "138f7bf1-f027-42c4-b705-9033b5f5871e"},
		"hostile": {"a/b\"c", "a_b_c"},
	} {
		r := Record{Name: jobs.RecordName("src", name), Event: []byte(`{}`), Config: []byte("apiVersion: v2"), Level: "stage", KeptnContext: tc.context}
		_, err := s.Create(ctx, r)
		require.NoError(t, err)
		cm, err := client.CoreV1().ConfigMaps("keptn").Get(ctx, r.Name, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, tc.label, cm.Labels[jobs.LabelKeptnContext], name)
	}
}

// TestStartedMark: only the two values MarkStarted writes mean something; anything else
// (a hand edit, a future value) leaves recovery to ask the cluster.
func TestStartedMark(t *testing.T) {
	for v, want := range map[string]StartedMark{"true": StartedDelivered, "false": StartedUndelivered, "": StartedUnrecorded, "yes": StartedUnrecorded, "TRUE": StartedUnrecorded} {
		got := fromMeta(&metav1.ObjectMeta{Annotations: map[string]string{AnnotationStarted: v}}).Started
		assert.Equal(t, want, got, "annotation %q", v)
	}
}

// TestRecordsConfigPending: a pending record holds the event alone, signed as pending and
// mutable; Resolve stores the matched actions in its place once, for its owner only, keeping
// its marks, and the result verifies as a record created with them.
func TestRecordsConfigPending(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	key := []byte("0123456789abcdef0123456789abcdef")
	a := newStore(client, "keptn", "pod-a", key)
	b := newStore(client, "keptn", "pod-b", key)
	name := jobs.RecordName("src", "p")
	_, err := a.Create(ctx, Record{Name: name, Event: []byte(`{"id":"p"}`), ConfigPending: true, KeptnContext: "ctx-1"})
	require.NoError(t, err)
	got, err := a.Load(ctx, name)
	require.NoError(t, err)
	assert.True(t, got.ConfigPending)
	assert.Empty(t, got.Config)
	require.NoError(t, a.Verify(*got))
	unpending := *got
	unpending.ConfigPending = false
	assert.ErrorIs(t, a.Verify(unpending), ErrBadSignature, "the pending state is signed")
	cm, err := client.CoreV1().ConfigMaps("keptn").Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.False(t, *cm.Immutable, "its data is written once more")

	require.NoError(t, a.MarkStarted(ctx, name, false))
	resolved := Record{Name: name, Event: []byte(`{"id":"p"}`), Config: []byte("apiVersion: v2"), ActionIndex: []int{2}, ConfigHash: "h", Level: "stage", KeptnContext: "ctx-1"}
	assert.ErrorIs(t, b.Resolve(ctx, resolved), ErrNotPending, "not pod-b's record")
	require.NoError(t, a.Resolve(ctx, resolved))
	assert.ErrorIs(t, a.Resolve(ctx, resolved), ErrNotPending, "resolved once")

	got, err = a.Load(ctx, name)
	require.NoError(t, err)
	assert.False(t, got.ConfigPending)
	assert.Equal(t, resolved.Config, got.Config)
	assert.Equal(t, []int{2}, got.ActionIndex)
	assert.Equal(t, "stage", got.Level)
	assert.Equal(t, "pod-a", got.Owner)
	assert.Equal(t, StartedUndelivered, got.Started, "marks are kept")
	require.NoError(t, a.Verify(*got))
	cm, err = client.CoreV1().ConfigMaps("keptn").Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.True(t, *cm.Immutable)
	assert.Equal(t, jobs.LabelValue("ctx-1"), cm.Labels[jobs.LabelKeptnContext])
	assert.NotContains(t, cm.Data, recordPending)
	assert.ErrorIs(t, a.Resolve(ctx, Record{Name: jobs.RecordName("src", "none")}), ErrNotPending)
}
