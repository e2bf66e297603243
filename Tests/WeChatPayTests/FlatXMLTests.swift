import Testing

@testable import WeChatPay

@Suite struct FlatXMLTests {
    func decode(_ text: String) throws(FlatXMLError) -> [String: String] { try FlatXML.decode(Array(text.utf8)) }

    @Test func encodeDecodeRoundTrip() throws {
        let fields = ["a": "plain", "b": "with <tags> & \"quotes\"", "c": "ends ]]> in the middle", "d": "中文", "e": ""]
        let decoded = try FlatXML.decode(Array(FlatXML.encode(fields).utf8))
        #expect(decoded == fields)
    }

    @Test func readsWhatWeChatSends() throws {
        let body = """
            <?xml version="1.0" encoding="UTF-8"?>
            <xml>
               <return_code><![CDATA[SUCCESS]]></return_code>
               <return_msg><![CDATA[OK]]></return_msg>
               <total_fee>1</total_fee>
               <empty/>
               <escaped>a &amp; b &lt;c&gt; &#20013;&#x6587;</escaped>
            </xml>
            """
        let fields = try decode(body)
        #expect(fields["return_code"] == "SUCCESS")
        #expect(fields["return_msg"] == "OK")
        #expect(fields["total_fee"] == "1")
        #expect(fields["empty"] == "")
        #expect(fields["escaped"] == "a & b <c> 中文")
    }

    @Test(arguments: [
        #"<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><a>&xxe;</a></xml>"#,
        #"<!DOCTYPE xml><xml><a>1</a></xml>"#,
        #"<xml><!ENTITY x "y"><a>1</a></xml>"#,
        #"<xml><a>1</a></xml><!DOCTYPE xml>"#,
        #"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;">]><xml><a>&lol1;</a></xml>"#,
        #"<xml><a><!-- comment --></a></xml>"#,
    ])
    func declarationsAreRejectedOutright(body: String) {
        #expect(throws: FlatXMLError.declarationsForbidden) { try decode(body) }
    }

    @Test(arguments: [
        "", "not xml", "<xml>", "<xml><a>1</a>", "<other><a>1</a></other>", "<xml><a><b>1</b></a></xml>",
        "<xml><a x=\"1\">1</a></xml>", "<xml><a>1</a><a>2</a></xml>", "<xml><a>&unknown;</a></xml>",
        "<xml><a>1 & 2</a></xml>", "<xml><a>1</b></xml>", "<xml><a><![CDATA[open</a></xml>", "<xml>text</xml>",
        "<xml><a>1</a></xml>trailing", "<xml><a>&#0;</a></xml>",
    ])
    func malformedBodiesAreRejected(body: String) {
        #expect(throws: FlatXMLError.self) { try decode(body) }
    }

    @Test func invalidUTF8IsRejected() {
        #expect(throws: FlatXMLError.invalidUTF8) {
            try FlatXML.decode(Array("<xml><a>".utf8) + [0xFF, 0xFE] + Array("</a></xml>".utf8))
        }
    }

    @Test func bodiesOverTheLimitAreRejectedBeforeParsing() {
        let body = [UInt8](repeating: UInt8(ascii: " "), count: FlatXML.maximumBodySize + 1)
        #expect(throws: FlatXMLError.tooLarge(FlatXML.maximumBodySize + 1)) { try FlatXML.decode(body) }
    }
}
