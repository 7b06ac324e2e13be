package coordinator

// Batches are the ids of the circuits Put writes in each start-up
// transaction (initialize_traefik_circuits' batches).
func (w *Writer) Batches(cs []Circuit) [][]string {
	var out [][]string
	for _, batch := range w.batches(cs) {
		ids := make([]string, len(batch))
		for i, c := range batch {
			ids[i] = c.ID
		}
		out = append(out, ids)
	}
	return out
}

// BatchPuts are the puts of each of those transactions into an empty tree:
// every key of the batch's circuits, the shared CORSHeaders once.
func (w *Writer) BatchPuts(cs []Circuit) []int {
	var out []int
	for _, batch := range w.batches(cs) {
		kv := map[string]string{}
		for _, c := range batch {
			for _, o := range w.objects(c) {
				for k, v := range o.kv {
					kv[k] = v
				}
			}
		}
		out = append(out, len(kv))
	}
	return out
}
