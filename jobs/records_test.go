package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestRecords(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	s := NewRecords(client, "keptn")
	a := Record{Name: RecordName("src", "a"), Event: []byte(`{"id":"a"}`), Config: []byte("apiVersion: v2"), Level: "stage"}
	b := Record{Name: RecordName("src", "b"), Event: []byte(`{"id":"b"}`), Config: []byte("apiVersion: v2"), Level: "service"}
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

	require.NoError(t, s.MarkStarted(ctx, a.Name))
	unfinished, err := s.Unfinished(ctx)
	require.NoError(t, err)
	require.Len(t, unfinished, 2)

	finishedAt := time.Unix(1_700_000_000, 0)
	require.NoError(t, s.MarkFinished(ctx, a.Name, finishedAt))
	unfinished, err = s.Unfinished(ctx)
	require.NoError(t, err)
	require.Len(t, unfinished, 1)
	assert.Equal(t, b.Name, unfinished[0].Name)
	assert.False(t, unfinished[0].Started)

	existing, err = s.Create(ctx, a)
	require.NoError(t, err)
	assert.True(t, existing.Finished)
	assert.True(t, existing.Started)
	assert.Equal(t, finishedAt, existing.FinishedAt)

	n, err := s.Prune(ctx, finishedAt.Add(30*time.Minute), time.Hour)
	require.NoError(t, err)
	assert.Zero(t, n, "younger than the retention")
	n, err = s.Prune(ctx, finishedAt.Add(2*time.Hour), time.Hour)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, err = client.CoreV1().ConfigMaps("keptn").Get(ctx, a.Name, metav1.GetOptions{})
	assert.Error(t, err, "pruned")
	_, err = client.CoreV1().ConfigMaps("keptn").Get(ctx, b.Name, metav1.GetOptions{})
	assert.NoError(t, err, "unfinished records are never pruned")
}
