package main

import (
	_ "github.com/cloudevents/sdk-go/v2"
	_ "github.com/go-chi/chi/v5"
	_ "github.com/keptn/go-utils/pkg/api/models"
	_ "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	_ "github.com/stretchr/testify/assert"
	_ "github.com/tidwall/gjson"
	_ "go.uber.org/zap"
	_ "k8s.io/api/batch/v1"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/client-go/kubernetes/fake"
	_ "k8s.io/client-go/informers"
	_ "k8s.io/client-go/tools/clientcmd"
	_ "sigs.k8s.io/yaml"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "golang.org/x/oauth2/clientcredentials"
)

func main() {}
