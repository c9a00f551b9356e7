/// Runs `body` with `resource` and then `stop`s it, also when `body` throws: the teardown a
/// trailing `await h.stop()` skips when an expectation throws first.
public func scoped<Resource, T>(
    _ resource: Resource, stop: (Resource) async -> Void, _ body: (Resource) async throws -> T
) async throws -> T {
    do {
        let result = try await body(resource)
        await stop(resource)
        return result
    } catch {
        await stop(resource)
        throw error
    }
}
