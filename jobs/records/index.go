package records

import (
	"context"
	"errors"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/keptn-contrib/job-executor-service/jobs"
)

// Index keeps the metadata of the store's event records in memory, by Keptn context, for
// the status route: one watch of the records (metadata only, no event or config) instead of a
// list per request.
type Index struct {
	inf cache.SharedIndexInformer
}

const byContext = "keptn-context"

// NewIndex returns an index over the store's namespace; Run starts it.
func (s *Store) NewIndex() *Index {
	sel := jobs.LabelManagedBy + "=" + jobs.ManagedByValue + "," + LabelComponent + "=" + ComponentEventRecord
	inf := metadatainformer.NewFilteredMetadataInformer(s.meta, configMaps, s.namespace, 0,
		cache.Indexers{byContext: func(obj any) ([]string, error) {
			m, ok := obj.(*metav1.PartialObjectMetadata)
			if !ok {
				return nil, nil
			}
			if v, ok := m.Labels[jobs.LabelKeptnContext]; ok {
				return []string{v}, nil
			}
			return nil, nil
		}},
		func(o *metav1.ListOptions) { o.LabelSelector = sel }).Informer()
	_ = inf.SetTransform(func(o any) (any, error) {
		if m, ok := o.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		return o, nil
	})
	return &Index{inf: inf}
}

// Start watches until ctx ends, in the background: the service starts without waiting for it
// (status is not what it is for), and ByContext says when the index is not ready.
func (i *Index) Start(ctx context.Context) { go i.inf.Run(ctx.Done()) }

// ErrNotSynced: the index has not listed the records yet (just started, or the service may
// not watch ConfigMaps in the namespace).
var ErrNotSynced = errors.New("the event record index has not synced yet (starting, or no permission to watch configmaps in the job namespace)")

// ByContext returns the metadata of the records labelled with keptnContext, by name. The
// label is sanitised (jobs.LabelValue), so different contexts may share one: callers compare
// the context in the verified record.
func (i *Index) ByContext(keptnContext string) ([]Record, error) {
	if !i.inf.HasSynced() {
		return nil, ErrNotSynced
	}
	objs, err := i.inf.GetIndexer().ByIndex(byContext, jobs.LabelValue(keptnContext))
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(objs))
	for _, o := range objs {
		if m, ok := o.(*metav1.PartialObjectMetadata); ok {
			out = append(out, fromMeta(&m.ObjectMeta))
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}
