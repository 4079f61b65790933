package recordstest

import (
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// LimitConfigMapSize makes client refuse a ConfigMap whose data values take more than
// corev1.MaxSecretSize bytes in all, with the 422 the API server answers; the fake clientset
// otherwise stores any size.
func LimitConfigMapSize(client *fake.Clientset) {
	client.PrependReactor("create", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		cm, ok := a.(k8stesting.CreateAction).GetObject().(*corev1.ConfigMap)
		if !ok {
			return false, nil, nil
		}
		size := 0
		for _, v := range cm.Data {
			size += len(v)
		}
		for _, v := range cm.BinaryData {
			size += len(v)
		}
		if size <= corev1.MaxSecretSize {
			return false, nil, nil
		}
		return true, nil, apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("ConfigMap").GroupKind(), cm.Name,
			field.ErrorList{field.TooLong(field.NewPath(""), "", corev1.MaxSecretSize)})
	})
}
