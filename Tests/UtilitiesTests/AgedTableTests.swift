import Testing
import Utilities

@Suite struct AgedTableTests {
    @Test func boundedByCapacity() {
        var table = AgedTable<Int, Int>(capacity: 10, lifetime: 60)
        for i in 0..<1_000 { table.set(i, i, now: 0) }
        #expect(table.count <= 10)
        // The newest entries are there; the oldest are gone.
        #expect(table.value(for: 999, now: 0) == 999)
        #expect(table.value(for: 0, now: 0) == nil)
    }

    @Test func entriesStayAtLeastTheLifetimeAndLeaveWithinTwice() {
        var table = AgedTable<String, Int>(capacity: 1_000, lifetime: 60)
        table.set("a", 1, now: 0)
        #expect(table.value(for: "a", now: 59) == 1)
        #expect(table.value(for: "a", now: 61) == 1)  // in the previous generation
        #expect(table.value(for: "a", now: 121) == nil)
        table.set("b", 2, now: 200)
        var dropped: [String: Int]?
        dropped = table.set("c", 3, now: 400)  // more than twice the lifetime later: all goes
        #expect(dropped?["b"] == 2)
        #expect(table.value(for: "b", now: 400) == nil)
        #expect(table.removeValue(for: "c") == 3)
        #expect(table.count == 0)
    }
}
