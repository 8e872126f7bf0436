import XCTest

@testable import SpringCacheUV

final class DemoOriginTests: XCTestCase {
    func testServesSpringcacheScoresForAnyGroup() {
        let origin = DemoOrigin()
        let cases: [(group: String, key: String, expected: LoadResult)] = [
            ("scores", "Tom", .value(Array("630".utf8))),
            ("scores", "Jack", .value(Array("589".utf8))),
            ("scores", "Sam", .value(Array("567".utf8))),
            ("scores", "Kate", .notFound),
            ("scores", "tom", .notFound),
            ("other", "Tom", .value(Array("630".utf8))),
        ]
        for c in cases {
            var results: [LoadResult] = []
            origin.load(group: c.group, key: c.key) { results.append($0) }
            XCTAssertEqual(results, [c.expected], "\(c.group)/\(c.key)")
        }
    }
}
