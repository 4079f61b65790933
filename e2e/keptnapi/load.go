package keptnapi

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LoadDir adds the resources under root to the server. The layout mirrors the API's URLs:
//
//	root/latest/<project>/resource/<path...>                                   project level
//	root/latest/<project>/stage/<stage>/resource/<path...>                     stage level
//	root/latest/<project>/stage/<stage>/service/<service>/resource/<path...>   service level
//	root/commits/<commitID>/<project>/...                                      same, for ?gitCommitID=<commitID>
//
// latest/ holds the branch heads. Every stage branch (of latest/ or commits/) is made before
// any file is loaded, so it starts without project files, like the stages Keptn creates with
// a project; a project file under latest/ is on the default branch only. A commit is made on
// the branch of its first stage (its project's own directory is read last), so under
// commits/<id>/ a stage's and the project's resource/ directories are both that commit's root.
//
// A project, stage or service directory makes that scope exist even without resources
// (put a .keep file in it for git); other files outside resource/ directories are ignored.
func (s *Server) LoadDir(root string) error {
	type tree struct{ commit, dir string }
	var trees []tree
	if _, err := os.Stat(filepath.Join(root, "latest")); err == nil {
		trees = append(trees, tree{Latest, filepath.Join(root, "latest")})
	} else if !os.IsNotExist(err) {
		return fmt.Errorf("keptnapi: %w", err)
	}
	commits, err := os.ReadDir(filepath.Join(root, "commits"))
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("keptnapi: %w", err)
	}
	for _, c := range commits {
		if c.IsDir() {
			trees = append(trees, tree{c.Name(), filepath.Join(root, "commits", c.Name())})
		}
	}
	if len(trees) == 0 {
		return fmt.Errorf("keptnapi: %s has neither latest/ nor commits/<id>/", root)
	}
	makeStage := func(_ string, sc Scope, _ string) error {
		if sc.Stage != "" && sc.Service == "" {
			s.AddScope(Latest, sc)
		}
		return nil
	}
	for _, visit := range []func(string, Scope, string) error{makeStage, s.loadScope} {
		for _, t := range trees {
			if err := s.walkTree(t.commit, t.dir, visit); err != nil {
				return err
			}
		}
	}
	return nil
}

// walkTree calls visit for every scope of one tree's projects: stages and their services
// first, then the project itself.
func (s *Server) walkTree(commit, dir string, visit func(commit string, sc Scope, dir string) error) error {
	projects, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("keptnapi: %w", err)
	}
	for _, p := range projects {
		if !p.IsDir() {
			continue
		}
		pdir := filepath.Join(dir, p.Name())
		if err := s.eachSub(pdir, "stage", func(stage, sdir string) error {
			sc := Scope{Project: p.Name(), Stage: stage}
			if err := visit(commit, sc, sdir); err != nil {
				return err
			}
			return s.eachSub(sdir, "service", func(svc, vdir string) error {
				return visit(commit, Scope{Project: p.Name(), Stage: stage, Service: svc}, vdir)
			})
		}); err != nil {
			return err
		}
		if err := visit(commit, Scope{Project: p.Name()}, pdir); err != nil {
			return err
		}
	}
	return nil
}

// eachSub calls fn for every directory in dir/kind (e.g. the stages of a project).
func (s *Server) eachSub(dir, kind string, fn func(name, subdir string) error) error {
	subs, err := os.ReadDir(filepath.Join(dir, kind))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("keptnapi: %w", err)
	}
	for _, e := range subs {
		if e.IsDir() {
			if err := fn(e.Name(), filepath.Join(dir, kind, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// loadScope registers sc and the files in dir/resource.
func (s *Server) loadScope(commit string, sc Scope, dir string) error {
	s.AddScope(commit, sc)
	rdir := filepath.Join(dir, "resource")
	err := filepath.WalkDir(rdir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(rdir, path)
		s.Put(commit, sc, filepath.ToSlash(rel), b)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("keptnapi: loading %s: %w", strings.TrimSuffix(rdir, "/resource"), err)
	}
	return nil
}

// newID returns a random UUID (v4) for a new Keptn context.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
