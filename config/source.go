package config

import (
	"context"
	"errors"
)

// ErrNotFound is returned (wrapped) by a Source when a resource does not exist.
var ErrNotFound = errors.New("not found")

// Level is where in Keptn's project/stage/service hierarchy a resource lives.
type Level int

// Levels, searched in this order for job/config.yaml.
const (
	LevelService Level = iota
	LevelStage
	LevelProject
)

// Ref names the hierarchy position and git commit of an event.
type Ref struct {
	Project, Stage, Service string
	// CommitID is the event's gitcommitid; empty means the latest. Only the service and
	// stage levels are read at it (see At).
	CommitID string
}

// At is the ref a level is read at: the project level always at its latest version, as the
// spec asks. Keptn's resource-service keeps project resources on the project's default branch
// and stage and service resources on the stage's branch, made from the default branch when
// the stage was created (keptn/keptn resource-service/handler/stage_context.go,
// stage_manager.go); an event's commit is the stage's, whose tree lacks project files added
// since and holds edited ones as they were.
func (r Ref) At(level Level) Ref {
	if level == LevelProject {
		r.CommitID = ""
	}
	return r
}

// Source reads resources (job/config.yaml and task files) from where configs are kept.
type Source interface {
	// Get returns the content of the resource at path (no leading slash) at one level.
	Get(ctx context.Context, ref Ref, level Level, path string) ([]byte, error)
	// List returns the paths of all resources under dir (recursive) at one level.
	List(ctx context.Context, ref Ref, level Level, dir string) ([]string, error)
}
