package metrics

// untrackForTest removes v from the vectors Forget walks (a test's vector, unregistered).
func untrackForTest(v *ShardedCounterVec) {
	vecsMu.Lock()
	defer vecsMu.Unlock()
	for i, tv := range vecs {
		if sv, ok := tv.v.(*ShardedCounterVec); ok && sv == v {
			vecs = append(vecs[:i], vecs[i+1:]...)
			return
		}
	}
}
