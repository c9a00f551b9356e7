import Synchronization

/// The in-memory copy of the bindings table (see `SQLiteStorage.bindingCacheBox`).
final class BindingCache: Sendable {
    struct State {
        var table: [String: [Binding]] = [:]
        /// Writes seen per AOR, so rows read from the file before a write are not kept.
        var writes: [String: UInt64] = [:]
    }
    let state = Mutex(State())

    /// The AOR's bindings if known here.
    func lookup(_ aor: String) -> [Binding]? { state.withLock { $0.table[aor] } }

    func writeCount(_ aor: String) -> UInt64 { state.withLock { $0.writes[aor, default: 0] } }

    /// Keeps rows read from the file, unless a write touched the AOR since the read began.
    func fill(_ aor: String, _ rows: [Binding], writesBefore: UInt64) {
        state.withLock { state in
            if state.table[aor] == nil, state.writes[aor, default: 0] == writesBefore { state.table[aor] = rows }
        }
    }

    func evict(_ aors: Set<String>) {
        state.withLock { state in
            for aor in aors {
                state.table[aor] = nil
                state.writes[aor, default: 0] &+= 1
            }
        }
    }

    func apply(upserts: [Binding], removals: [BindingRemoval]) {
        state.withLock { state in
            for removal in removals {
                state.writes[removal.aor, default: 0] &+= 1
                state.table[removal.aor]?.removeAll { removal.takes($0) }
            }
            for binding in upserts {
                state.writes[binding.aor, default: 0] &+= 1
                // Only AORs already known here; others are read from the file when asked.
                guard var list = state.table[binding.aor] else { continue }
                if let index = list.firstIndex(where: { $0.key == binding.key }) {
                    list[index] = binding
                } else {
                    list.append(binding)
                }
                state.table[binding.aor] = list
            }
        }
    }

    func removeExpired(now: Int64) {
        state.withLock { state in
            for (aor, list) in state.table where list.contains(where: { $0.expiresAt <= now }) {
                state.table[aor] = list.filter { $0.expiresAt > now }
            }
        }
    }
}
