package ra

import "github.com/keyward/keyward/internal/issuer"

// StampsForTest returns the stamps of every shape the RA holds, fresh or not.
func (r *RA) StampsForTest() []*issuer.Stamp {
	var out []*issuer.Stamp
	r.stamps.shapes.Range(func(_, v any) bool {
		if st := v.(*shapeStamps).cur.Load(); st != nil {
			out = append(out, st.stamp)
		}
		return true
	})
	return out
}
