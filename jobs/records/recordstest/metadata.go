// Package recordstest is test support for code that keeps event records: a metadata client
// over a fake clientset's ConfigMaps. It is for tests only.
package recordstest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/metadata"
	metadatafake "k8s.io/client-go/metadata/fake"
)

// Metadata lists and watches the ConfigMaps of a fake clientset as the API server serves
// metadata: label selector applied; lists in name order, in pages of ListOptions.Limit joined
// by Continue tokens. client-go's metadata fake keeps objects of its own and drops Limit and
// Continue, so List and Watch of ConfigMaps are served here; everything else is the fake's.
type Metadata struct {
	*metadatafake.FakeMetadataClient
	client *fake.Clientset

	mu    sync.Mutex
	lists []metav1.ListOptions
}

// NewMetadata serves the ConfigMaps of client.
func NewMetadata(client *fake.Clientset) *Metadata {
	return &Metadata{FakeMetadataClient: metadatafake.NewSimpleMetadataClient(metadatafake.NewTestScheme()), client: client}
}

// Lists are the options of every List of ConfigMaps so far, in order.
func (m *Metadata) Lists() []metav1.ListOptions {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.lists)
}

var configMaps = corev1.SchemeGroupVersion.WithResource("configmaps")

// Resource implements metadata.Interface.
func (m *Metadata) Resource(r schema.GroupVersionResource) metadata.Getter {
	g := m.FakeMetadataClient.Resource(r)
	if r != configMaps {
		return g
	}
	return getter{Getter: g, m: m}
}

type getter struct {
	metadata.Getter
	m *Metadata
}

func (g getter) Namespace(ns string) metadata.ResourceInterface {
	return lister{ResourceInterface: g.Getter.Namespace(ns), m: g.m, namespace: ns}
}

type lister struct {
	metadata.ResourceInterface
	m         *Metadata
	namespace string
}

func (l lister) List(_ context.Context, opts metav1.ListOptions) (*metav1.PartialObjectMetadataList, error) {
	l.m.mu.Lock()
	l.m.lists = append(l.m.lists, opts)
	l.m.mu.Unlock()
	sel, err := labels.Parse(opts.LabelSelector)
	if err != nil {
		return nil, err
	}
	// The tracker, not the typed client: a typed List would show up among the client's actions.
	obj, err := l.m.client.Tracker().List(configMaps, corev1.SchemeGroupVersion.WithKind("ConfigMap"), l.namespace)
	if err != nil {
		return nil, err
	}
	var items []metav1.PartialObjectMetadata
	for _, cm := range obj.(*corev1.ConfigMapList).Items {
		if sel.Matches(labels.Set(cm.Labels)) {
			items = append(items, *meta.AsPartialObjectMetadata(&cm))
		}
	}
	slices.SortFunc(items, func(a, b metav1.PartialObjectMetadata) int { return strings.Compare(a.Name, b.Name) })
	start := 0
	if opts.Continue != "" {
		if start, err = strconv.Atoi(opts.Continue); err != nil || start > len(items) {
			return nil, fmt.Errorf("bad continue token %q", opts.Continue)
		}
	}
	out := &metav1.PartialObjectMetadataList{Items: items[start:]}
	if opts.Limit > 0 && int64(len(out.Items)) > opts.Limit {
		out.Items = out.Items[:opts.Limit]
		out.Continue = strconv.Itoa(start + int(opts.Limit))
	}
	return out, nil
}

func (l lister) Watch(_ context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	sel, err := labels.Parse(opts.LabelSelector)
	if err != nil {
		return nil, err
	}
	w, err := l.m.client.Tracker().Watch(configMaps, l.namespace)
	if err != nil {
		return nil, err
	}
	return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
		cm, ok := e.Object.(*corev1.ConfigMap)
		if !ok {
			return e, true
		}
		e.Object = meta.AsPartialObjectMetadata(cm)
		return e, sel.Matches(labels.Set(cm.Labels))
	}), nil
}
