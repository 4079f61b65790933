// Package knative holds plain Kubernetes manifests for running the service behind Knative
// Eventing (the .yaml files here) and the Go shape of their Knative Service, which the manifest
// checks (knative_test.go) and the e2e test decode; the e2e test runs its pod spec as a
// Deployment. Server-side validation against the real CRDs is done by dry-run.sh in a cluster.
package knative

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Service is a Knative Service (serving.knative.dev/v1) as far as the manifests may use it.
// Modelled here, not imported, so the module does not depend on knative.dev; decoded strictly,
// anything else is an error.
type Service struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Template struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
			Spec     struct {
				corev1.PodSpec       `json:",inline"`
				ContainerConcurrency *int64 `json:"containerConcurrency,omitempty"`
				TimeoutSeconds       *int64 `json:"timeoutSeconds,omitempty"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}
