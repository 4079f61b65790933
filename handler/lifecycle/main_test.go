package lifecycle

import (
	"testing"

	"github.com/keptn-contrib/job-executor-service/jobs/jobstest"
)

func TestMain(m *testing.M) { jobstest.VerifyNoLeaks(m) }
