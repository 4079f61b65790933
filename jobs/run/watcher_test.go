package run

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"github.com/keptn-contrib/job-executor-service/jobs"
)

// Concurrent tasks in one namespace share one watch per kind.
func TestWatcherSharesInformers(t *testing.T) {
	e := newRunEnv(t, Options{})
	b1 := built(t, nil)
	b2 := built(t, nil)
	b2.Job = b2.Job.DeepCopy()
	b2.Job.Name = jobs.JobName("other", "event", 0, 0)
	b2.Job.Labels[jobs.LabelJob] = b2.Job.Name
	b2.Job.Spec.Template.Labels[jobs.LabelJob] = b2.Job.Name

	job1, done1 := e.start(b1)
	// The namespace is watched already: the second run starts no new watches.
	done2 := make(chan jobs.Result, 1)
	go func() { done2 <- e.runner.Run(e.ctx, b2) }()
	jw, err := e.client.BatchV1().Jobs(b2.Namespace).Watch(e.ctx, metav1.ListOptions{})
	require.NoError(t, err)
	<-e.watches
	var job2 *batchv1.Job
	if j, err := e.client.BatchV1().Jobs(b2.Namespace).Get(e.ctx, b2.Job.Name, metav1.GetOptions{}); err == nil {
		job2 = j
	} else {
		job2 = e.waitJob(jw, b2.Job.Name)
	}
	jw.Stop()

	e.setCondition(job2, batchv1.JobFailed, "BackoffLimitExceeded", "")
	e.setCondition(job1, batchv1.JobComplete, "", "")
	r1, r2 := e.result(done1), e.result(done2)
	assert.True(t, r1.Succeeded)
	assert.False(t, r2.Succeeded)
	assert.Equal(t, "BackoffLimitExceeded", r2.Reason)
	select {
	case w := <-e.watches:
		t.Fatalf("unexpected extra watch on %s", w)
	default:
	}
}

func TestWatcherSyncFailure(t *testing.T) {
	old := syncTimeout
	syncTimeout = 50 * time.Millisecond
	t.Cleanup(func() { syncTimeout = old })
	e := newRunEnv(t, Options{})
	e.client.PrependReactor("list", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, "", errors.New("no RBAC"))
	})
	b := built(t, nil)
	res := e.runner.Run(e.ctx, b)
	assert.Equal(t, ReasonWatchFailed, res.Reason)
	assert.Contains(t, res.Message, "caches did not sync")
	assert.False(t, e.jobExists(b), "nothing is created when the Job cannot be watched")

	e.runner.Watcher().Stop()
	e.runner.Watcher().Stop() // idempotent
	res = e.runner.Run(e.ctx, b)
	assert.Equal(t, ReasonWatchFailed, res.Reason)
	assert.Contains(t, res.Message, "watcher stopped")
}

func TestStripManagedFields(t *testing.T) {
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "j", Labels: map[string]string{"a": "b"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate}}}}
	out, err := stripManagedFields(job)
	require.NoError(t, err)
	assert.Nil(t, out.(*batchv1.Job).ManagedFields)
	assert.Equal(t, "b", out.(*batchv1.Job).Labels["a"], "the rest stays")
	tombstone := "not an object"
	out, err = stripManagedFields(tombstone)
	require.NoError(t, err)
	assert.Equal(t, tombstone, out)
}
