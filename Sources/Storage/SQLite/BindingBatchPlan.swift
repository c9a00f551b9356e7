/// One registration's change to the bindings table. The write queue commits the changes of
/// a batch together (`SQLiteBindingWriter.commit`).
struct BindingChange: Sendable {
    var upserts: [Binding]
    var removals: [BindingRemoval]
    /// Runs once the change is committed, in commit order.
    var committed: @Sendable () -> Void

    /// What a run of changes comes to: the deletes, run in order, then the rows to upsert.
    struct Plan {
        var deletes: [BindingRemoval]
        var rows: [Binding]
    }

    /// The statements for a run of changes, with the same outcome as running them one by
    /// one: the last word on each (aor, key) wins; a binding removed and added again in the
    /// run is deleted first, so it gets a fresh rowid (the table's order is insertion order);
    /// new rows are inserted in the order they were first added. A conditional removal of a
    /// row the run itself upserts is decided here, against that row's version.
    static func plan(_ changes: [BindingChange]) -> Plan {
        struct Key: Hashable {
            var aor: String
            var key: String
        }
        struct Final {
            var binding: Binding?
            var created: Int
        }
        var finals: [Key: Final] = [:]
        var deletes: [BindingRemoval] = []
        var sequence = 0
        for change in changes {
            for removal in change.removals {
                let key = Key(aor: removal.aor, key: removal.key)
                if let pending = finals[key]?.binding {
                    guard removal.onlyIf.map({ $0 == pending.version }) ?? true else { continue }
                    // Whatever the file holds under this key, the run's own row replaced it.
                    deletes.append(BindingRemoval(aor: removal.aor, key: removal.key))
                } else {
                    deletes.append(removal)  // the file's row: its version is checked there
                }
                finals[key] = Final(binding: nil, created: 0)
            }
            for binding in change.upserts {
                let key = Key(aor: binding.aor, key: binding.key)
                if finals[key]?.binding != nil {
                    finals[key]?.binding = binding
                } else {
                    sequence += 1
                    finals[key] = Final(binding: binding, created: sequence)
                }
            }
        }
        let rows = finals.values.compactMap { final in final.binding.map { (final.created, $0) } }
            .sorted { $0.0 < $1.0 }.map(\.1)
        return Plan(deletes: deletes, rows: rows)
    }

    static let upsertSQL = """
        INSERT INTO bindings (aor, binding_key, contact, contact_header, instance, reg_id, impi, expires_at,
            call_id, cseq, path, scheme)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(aor, binding_key) DO UPDATE SET contact = excluded.contact,
            contact_header = excluded.contact_header, impi = excluded.impi,
            expires_at = excluded.expires_at, call_id = excluded.call_id, cseq = excluded.cseq,
            path = excluded.path, scheme = excluded.scheme
        """
}
