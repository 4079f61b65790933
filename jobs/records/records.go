// Package records owns the service's durable state in the cluster: event records
// (ConfigMaps that make an accepted event survive a restart or another instance taking
// over) and instance leases (which say that an instance is alive). It must not run Jobs
// (that is jobs/run) nor send events (that is handler/lifecycle).
package records

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/pager"

	"github.com/keptn-contrib/job-executor-service/jobs"
)

// An event record is a ConfigMap that makes an accepted event durable: the triggering
// event and the job config it matched, stored before the first Job is created. With it a
// restarted service finds its unfinished work (Recover) and a redelivered event is known
// even after a restart. It holds no secrets: the event and config are not secret in Keptn.
const (
	LabelComponent       = "app.kubernetes.io/component"
	ComponentEventRecord = "event-record"
	LabelFinished        = "job-executor-service/finished"
	AnnotationStarted    = "job-executor-service/started-sent"
	AnnotationFinishedAt = "job-executor-service/finished-at"
	// AnnotationOwner names the instance running the event; the instance proves it is alive
	// by renewing its Lease (see Heartbeat).
	AnnotationOwner = "job-executor-service/owner"
	// AnnotationSignature holds the HMAC-SHA256 (hex) over everything recovery uses: the
	// namespace, the record name, the event, the config, the level, and the action indices and
	// config hash. Only a service that has the signing key (RECORD_SIGNING_KEY) can produce it,
	// so a ConfigMap planted with the record labels by anyone else who can create ConfigMaps in
	// the namespace is not resumed.
	AnnotationSignature = "job-executor-service/signature"

	recordEvent       = "event.json"
	recordConfig      = "config.yaml"  // a whole job config (records of earlier versions)
	recordActions     = "actions.json" // the matched actions only
	recordActionIndex = "action-indices"
	recordConfigHash  = "config-hash"
	recordLevel       = "level"
	// recordPending marks a record taken in while the job config could not be read: it holds
	// the event only, until Resolve stores what the event matched.
	recordPending = "config-pending"
)

// The size budget of a record. The API server refuses a ConfigMap whose data values take
// more than MaxDataBytes in all; the receiver's MAX_REQUEST_BYTES may not exceed
// MaxEventBytes, so that every event it takes in can be stored as long as the actions it
// matched fit in ConfigReserve. A record that would still be larger is refused (ErrTooLarge)
// rather than sent to the API server, which would refuse it on every delivery.
const (
	MaxDataBytes  = corev1.MaxSecretSize // the API server applies the Secret bound to ConfigMaps too
	ConfigReserve = 64 << 10             // matched actions, their indices, config hash, level
	MaxEventBytes = MaxDataBytes - ConfigReserve
)

// ErrTooLarge means a record cannot hold the event: delivering it again cannot help.
var ErrTooLarge = errors.New("event record too large")

// Record is one accepted event.
type Record struct {
	Name string
	// Event is the CloudEvent in structured JSON.
	Event []byte
	// Config is the job config recovery runs, and Level where it was found, so that recovery
	// runs what the first delivery would have run. It holds only the actions the event
	// matched; ActionIndex are their places in the whole config (they name the Jobs) and
	// ConfigHash the whole config's hash (a Job label). Records of earlier versions hold the
	// whole config and no ActionIndex: recovery matches the event against it again.
	Config      []byte
	ActionIndex []int
	ConfigHash  string
	Level       string
	// KeptnContext labels the record (jobs.LabelKeptnContext, sanitised) so that the status
	// of a Keptn context finds its records; the label is a hint, the signed event is the truth.
	KeptnContext string
	Started      StartedMark
	Finished     bool // .finished was delivered
	// FinishedAt is when Finished was recorded (zero while unfinished).
	FinishedAt time.Time
	// Owner is the instance that runs the event.
	Owner string
	// ConfigPending: the event was taken in while its job config could not be read; the record
	// holds the event only (no Config, Level or ActionIndex) until Resolve.
	ConfigPending bool
	// Created is when the record was stored.
	Created time.Time

	resourceVersion string // for claiming the record without racing another instance
	signature       string // AnnotationSignature as stored
}

// StartedMark is what a record says about the delivery of the event's .started
// (AnnotationStarted).
type StartedMark string

const (
	// StartedUnrecorded: the record does not say. Recovery asks the cluster: a Job of an
	// action that answers Keptn exists only once .started was delivered.
	StartedUnrecorded StartedMark = ""
	StartedDelivered  StartedMark = "true"
	// StartedUndelivered: sending .started failed; recovery sends it again.
	StartedUndelivered StartedMark = "false"
)

// Version is the stored record's resourceVersion: it changes with every update.
func (r Record) Version() string { return r.resourceVersion }

// Store stores event records in one namespace (JOB_NAMESPACE) for one service instance.
type Store struct {
	client kubernetes.Interface
	// meta lists records without their data: a backlog of records, each up to 1 MiB, must
	// not have to fit in memory to be found.
	meta      metadata.Interface
	namespace string
	instance  string
	key       []byte // signing key; nil: records are neither signed nor verified
	lease     time.Duration
	now       func() time.Time
	pageSize  int64 // records per list request; 0: the pager's default (500)
}

// DefaultLeaseDuration is how long an instance that stopped renewing its Lease still owns its
// events; after that any instance may resume them.
const DefaultLeaseDuration = 30 * time.Second

// New returns a store in namespace for the instance named instance (the pod name:
// a container restarted in the same pod resumes its own events at once). meta is a metadata
// client of the same cluster, for listing records. Records it creates are signed with key
// (HMAC-SHA256), and Verify accepts only records signed with it. With an empty key nothing is
// signed and Verify accepts every record: recovery then trusts whoever can create ConfigMaps
// in the namespace (local runs; the chart always sets a key).
func New(client kubernetes.Interface, meta metadata.Interface, namespace, instance string, key []byte) *Store {
	return &Store{client: client, meta: meta, namespace: namespace, instance: instance, key: key, lease: DefaultLeaseDuration, now: time.Now}
}

// Signed reports whether records are signed and verified (a key was given).
func (s *Store) Signed() bool { return len(s.key) > 0 }

// ErrUnsigned and ErrBadSignature are what Verify reports for a record that does not verify.
var (
	ErrUnsigned     = errors.New("event record carries no signature")
	ErrBadSignature = errors.New("event record signature does not match (not created by a service with this signing key, or altered)")
)

// Verify reports whether r was created by a service holding this store's key and is unchanged
// since (name, event, config and level; the namespace is this store's). A store without a key
// accepts every record.
func (s *Store) Verify(r Record) error {
	if !s.Signed() {
		return nil
	}
	if r.signature == "" {
		return ErrUnsigned
	}
	got, err := hex.DecodeString(r.signature)
	if err != nil || !hmac.Equal(got, s.mac(r)) {
		return ErrBadSignature
	}
	return nil
}

// mac is the HMAC-SHA256 of r in this namespace. Every field is length-prefixed, so that no
// two different records share an input (moving bytes from the event into the config, say).
// Records with the whole config (no ActionIndex) keep the input they were signed with.
func (s *Store) mac(r Record) []byte {
	h := hmac.New(sha256.New, s.key)
	fields := [][]byte{[]byte("jes-event-record-v1"), []byte(s.namespace), []byte(r.Name), r.Event, r.Config, []byte(r.Level)}
	switch {
	case r.ConfigPending:
		fields[0] = []byte("jes-event-record-pending-v1")
	case r.ActionIndex != nil:
		fields[0] = []byte("jes-event-record-v2")
		fields = append(fields, []byte(formatIndices(r.ActionIndex)), []byte(r.ConfigHash))
	}
	for _, field := range fields {
		_ = binary.Write(h, binary.BigEndian, uint64(len(field)))
		h.Write(field)
	}
	return h.Sum(nil)
}

// WithLeaseDuration changes DefaultLeaseDuration (tests).
func (s *Store) WithLeaseDuration(d time.Duration) *Store { s.lease = d; return s }

// Create stores r unless a record of that name exists; then it returns the existing one
// (a redelivered event) and stores nothing.
func (s *Store) Create(ctx context.Context, r Record) (existing *Record, err error) {
	cm, err := s.configMap(r)
	if err != nil {
		return nil, err
	}
	_, err = s.client.CoreV1().ConfigMaps(s.namespace).Create(ctx, cm, metav1.CreateOptions{})
	if err == nil {
		return nil, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("storing event record %s/%s: %w", s.namespace, r.Name, err)
	}
	got, err := s.client.CoreV1().ConfigMaps(s.namespace).Get(ctx, r.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading event record %s/%s: %w", s.namespace, r.Name, err)
	}
	rec := fromConfigMap(got)
	return &rec, nil
}

// configMap is the ConfigMap that stores r, owned by this instance and signed.
func (s *Store) configMap(r Record) (*corev1.ConfigMap, error) {
	// Data never changes, except once for a pending record (Resolve); metadata (labels,
	// annotations) still may.
	immutable := !r.ConfigPending
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: r.Name, Namespace: s.namespace,
			Labels:      map[string]string{jobs.LabelManagedBy: jobs.ManagedByValue, LabelComponent: ComponentEventRecord, LabelFinished: "false"},
			Annotations: map[string]string{AnnotationOwner: s.instance},
		},
		Immutable:  &immutable,
		BinaryData: map[string][]byte{recordEvent: r.Event, recordConfig: r.Config},
		Data:       map[string]string{recordLevel: r.Level},
	}
	if r.KeptnContext != "" {
		cm.Labels[jobs.LabelKeptnContext] = jobs.LabelValue(r.KeptnContext)
	}
	switch {
	case r.ConfigPending:
		delete(cm.BinaryData, recordConfig)
		cm.Data[recordPending] = "true"
	case r.ActionIndex != nil:
		delete(cm.BinaryData, recordConfig)
		cm.BinaryData[recordActions] = r.Config
		cm.Data[recordActionIndex], cm.Data[recordConfigHash] = formatIndices(r.ActionIndex), r.ConfigHash
	}
	if size := dataSize(cm); size > MaxDataBytes {
		return nil, fmt.Errorf("%w: it would take %d bytes (the event %d, the actions it matched %d), a ConfigMap holds at most %d bytes",
			ErrTooLarge, size, len(r.Event), len(r.Config), MaxDataBytes)
	}
	if s.Signed() {
		cm.Annotations[AnnotationSignature] = hex.EncodeToString(s.mac(r))
	}
	return cm, nil
}

// ErrNotPending means Resolve found no pending record of this instance under that name: another
// instance took it over (this one was thought dead), or it was resolved or removed.
var ErrNotPending = errors.New("no pending event record of this instance")

// Resolve stores r, the event's record with the actions it matched, in place of the pending
// record of the same name, once. The patch is conditional on the version read, so that an
// instance taking the record over meanwhile is never overwritten: then ErrNotPending. Labels
// and the started, finished and owner marks are kept. (A patch, like every other change of a
// record: the service's Role grants no update of ConfigMaps.)
func (s *Store) Resolve(ctx context.Context, r Record) error {
	cms := s.client.CoreV1().ConfigMaps(s.namespace)
	cur, err := cms.Get(ctx, r.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return ErrNotPending
	}
	if err != nil {
		return fmt.Errorf("reading event record %s/%s: %w", s.namespace, r.Name, err)
	}
	if cur.Data[recordPending] != "true" || cur.Annotations[AnnotationOwner] != s.instance {
		return ErrNotPending
	}
	r.ConfigPending = false
	cm, err := s.configMap(r)
	if err != nil {
		return err
	}
	data := map[string]any{recordPending: nil} // a merge patch removes what it sets to null
	for k, v := range cm.Data {
		data[k] = v
	}
	meta := map[string]any{"resourceVersion": cur.ResourceVersion}
	if sig, ok := cm.Annotations[AnnotationSignature]; ok {
		meta["annotations"] = map[string]string{AnnotationSignature: sig}
	}
	patch, err := json.Marshal(map[string]any{"metadata": meta, "immutable": true, "data": data, "binaryData": cm.BinaryData})
	if err != nil {
		return err
	}
	_, err = cms.Patch(ctx, r.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	switch {
	case apierrors.IsConflict(err), apierrors.IsNotFound(err):
		return ErrNotPending
	case err != nil:
		return fmt.Errorf("storing event record %s/%s: %w", s.namespace, r.Name, err)
	}
	return nil
}

// MarkStarted records whether .started was delivered, where no Job can tell recovery.
func (s *Store) MarkStarted(ctx context.Context, name string, delivered bool) error {
	mark := StartedUndelivered
	if delivered {
		mark = StartedDelivered
	}
	return s.patch(ctx, name, map[string]any{"annotations": map[string]string{AnnotationStarted: string(mark)}})
}

// MarkFinished notes that .finished was delivered; the record then only serves to recognise
// redeliveries until Prune removes it.
func (s *Store) MarkFinished(ctx context.Context, name string, at time.Time) error {
	return s.patch(ctx, name, map[string]any{
		"labels":      map[string]string{LabelFinished: "true"},
		"annotations": map[string]string{AnnotationFinishedAt: strconv.FormatInt(at.Unix(), 10)},
	})
}

func (s *Store) patch(ctx context.Context, name string, meta map[string]any) error {
	body, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return err
	}
	_, err = s.client.CoreV1().ConfigMaps(s.namespace).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("updating event record %s/%s: %w", s.namespace, name, err)
	}
	return nil
}

// Unfinished calls fn for each record whose .finished was never delivered, signed or not,
// until fn returns an error. The records carry their metadata only (no Event, Config or
// Level): Load reads a whole record, and Verify tells which ones this store's key vouches for.
func (s *Store) Unfinished(ctx context.Context, fn func(Record) error) error {
	return s.each(ctx, LabelFinished+"=false", fn)
}

// Load reads the whole record named name; nil when it no longer exists.
func (s *Store) Load(ctx context.Context, name string) (*Record, error) {
	cm, err := s.client.CoreV1().ConfigMaps(s.namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading event record %s/%s: %w", s.namespace, name, err)
	}
	r := fromConfigMap(cm)
	return &r, nil
}

// Prune deletes the finished records older than retention, and the oldest beyond the keep
// newest ones, whatever their age: a burst of events must not leave an unbounded number of
// records (each up to 1 MiB) in the namespace. A record labelled finished without a time has
// no age and counts as the oldest. Unfinished records are never deleted. It decides from the records'
// metadata alone and returns how many it removed.
func (s *Store) Prune(ctx context.Context, now time.Time, retention time.Duration, keep int) (int, error) {
	var finished []Record
	err := s.each(ctx, LabelFinished+"=true", func(r Record) error {
		finished = append(finished, Record{Name: r.Name, FinishedAt: r.FinishedAt})
		return nil
	})
	if err != nil {
		return 0, err
	}
	slices.SortFunc(finished, func(a, b Record) int { return b.FinishedAt.Compare(a.FinishedAt) }) // newest first
	n := 0
	var errs []error
	for i, r := range finished {
		if i < keep && (r.FinishedAt.IsZero() || now.Sub(r.FinishedAt) < retention) {
			continue
		}
		err := s.client.CoreV1().ConfigMaps(s.namespace).Delete(ctx, r.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

var configMaps = corev1.SchemeGroupVersion.WithResource("configmaps")

// each calls fn with the metadata of every record that selector also matches, listed a page
// at a time.
func (s *Store) each(ctx context.Context, selector string, fn func(Record) error) error {
	p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return s.meta.Resource(configMaps).Namespace(s.namespace).List(ctx, opts)
	})
	if s.pageSize > 0 {
		p.PageSize = s.pageSize
	}
	sel := jobs.LabelManagedBy + "=" + jobs.ManagedByValue + "," + LabelComponent + "=" + ComponentEventRecord + "," + selector
	err := p.EachListItem(ctx, metav1.ListOptions{LabelSelector: sel}, func(obj runtime.Object) error {
		m, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			return fmt.Errorf("listing event records: got %T, want metadata", obj)
		}
		return fn(fromMeta(&m.ObjectMeta))
	})
	if err != nil {
		return fmt.Errorf("listing event records in %s: %w", s.namespace, err)
	}
	return nil
}

// startedMark reads AnnotationStarted; anything else than its two values says nothing.
func startedMark(v string) StartedMark {
	if m := StartedMark(v); m == StartedDelivered || m == StartedUndelivered {
		return m
	}
	return StartedUnrecorded
}

// fromMeta is the part of a record its labels and annotations hold.
func fromMeta(m *metav1.ObjectMeta) Record {
	r := Record{
		Name:     m.Name,
		Started:  startedMark(m.Annotations[AnnotationStarted]),
		Finished: m.Labels[LabelFinished] == "true",
		Owner:    m.Annotations[AnnotationOwner],
		Created:  m.CreationTimestamp.Time,

		resourceVersion: m.ResourceVersion,
		signature:       m.Annotations[AnnotationSignature],
	}
	if sec, err := strconv.ParseInt(m.Annotations[AnnotationFinishedAt], 10, 64); err == nil {
		r.FinishedAt = time.Unix(sec, 0)
	}
	return r
}

func fromConfigMap(cm *corev1.ConfigMap) Record {
	r := fromMeta(&cm.ObjectMeta)
	r.Event, r.Config, r.Level = cm.BinaryData[recordEvent], cm.BinaryData[recordConfig], cm.Data[recordLevel]
	r.ConfigPending = cm.Data[recordPending] == "true"
	if actions, ok := cm.BinaryData[recordActions]; ok {
		r.Config, r.ConfigHash = actions, cm.Data[recordConfigHash]
		r.ActionIndex = parseIndices(cm.Data[recordActionIndex])
	}
	return r
}

// dataSize is what the API server counts against MaxDataBytes: the data values.
func dataSize(cm *corev1.ConfigMap) int {
	n := 0
	for _, v := range cm.Data {
		n += len(v)
	}
	for _, v := range cm.BinaryData {
		n += len(v)
	}
	return n
}

// formatIndices writes action indices as "0,3,4".
func formatIndices(idx []int) string {
	parts := make([]string, len(idx))
	for i, n := range idx {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

// parseIndices reads formatIndices; never nil, so that a record with actions.json stays one
// even when its indices are damaged (recovery then refuses it: the counts differ).
func parseIndices(s string) []int {
	out := []int{}
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// Claim makes this instance the owner of an unfinished record, unless its owner is alive
// (its Lease is renewed). It reports whether this instance now owns the record. Two instances
// claiming at once cannot both win: the update is conditional on the record's version.
func (s *Store) Claim(ctx context.Context, r Record) (bool, error) {
	if r.Owner == s.instance {
		return true, nil
	}
	if r.Owner != "" {
		alive, err := s.Alive(ctx, r.Owner)
		if err != nil || alive {
			return false, err
		}
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": r.resourceVersion,
		"annotations":     map[string]string{AnnotationOwner: s.instance},
	}})
	if err != nil {
		return false, err
	}
	_, err = s.client.CoreV1().ConfigMaps(s.namespace).Patch(ctx, r.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsConflict(err), apierrors.IsNotFound(err):
		return false, nil // another instance was faster, or the record is gone
	}
	return false, fmt.Errorf("claiming event record %s/%s: %w", s.namespace, r.Name, err)
}

// Alive reports whether instance renews its Lease (it runs the events it owns).
func (s *Store) Alive(ctx context.Context, instance string) (bool, error) {
	l, err := s.client.CoordinationV1().Leases(s.namespace).Get(ctx, jobs.LeaseName(instance), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the lease of instance %s: %w", instance, err)
	}
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return false, nil
	}
	expires := l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second)
	return s.now().Before(expires), nil
}

// Heartbeat keeps this instance's Lease renewed until ctx ends, then deletes it so that other
// instances may resume what this one leaves unfinished right away. It calls onError for
// failed renewals and keeps trying.
func (s *Store) Heartbeat(ctx context.Context, onError func(error)) {
	tick := time.NewTicker(max(s.lease/3, 10*time.Millisecond))
	defer tick.Stop()
	for {
		if err := s.renew(ctx); err != nil && ctx.Err() == nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			del, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.client.CoordinationV1().Leases(s.namespace).Delete(del, jobs.LeaseName(s.instance), metav1.DeleteOptions{})
			return
		case <-tick.C:
		}
	}
}

func (s *Store) renew(ctx context.Context) error {
	now := metav1.NewMicroTime(s.now())
	secs := int32(max(s.lease/time.Second, 1))
	leases := s.client.CoordinationV1().Leases(s.namespace)
	l, err := leases.Get(ctx, jobs.LeaseName(s.instance), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: jobs.LeaseName(s.instance), Namespace: s.namespace,
				Labels: map[string]string{jobs.LabelManagedBy: jobs.ManagedByValue}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &s.instance, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &s.instance, &secs, &now
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}
