import Foundation
import Testing
@testable import FrugalData

@Suite struct TextDatasetTests {
    @Test func sst2AndAgNews() throws {
        let tmp = DataTempDir()
        defer { tmp.cleanup() }
        try tmp.write("sst.tsv", Array("sentence\tlabel\r\nit 's fine \t1\r\na dull , tab\tfilled mess\t0\r\n".utf8))
        let sst = try TextDataset.sst2(file: tmp.file("sst.tsv"))
        #expect(sst.texts == ["it 's fine", "a dull , tab\tfilled mess"])
        #expect(sst.labels == [1, 0])
        try tmp.write("bad.tsv", Array("sentence\tlabel\nok\t1\nno label here\n".utf8))
        #expect {
            try TextDataset.sst2(file: tmp.file("bad.tsv"))
        } throws: { e in "\(e)".contains("bad.tsv line 3") }
        try tmp.write("ag.tsv", Array("Stocks fall.\tBusiness\nA goal!\tSports\nMars\tSci/Tech\nTalks\tWorld\n".utf8))
        let ag = try TextDataset.agNews(file: tmp.file("ag.tsv"))
        #expect(ag.labels == [2, 1, 3, 0])
        #expect(ag.classNames == ["World", "Sports", "Business", "Sci/Tech"])
        try tmp.write("ag2.tsv", Array("x\tPolitics\ny\tNope\n".utf8))
        #expect(throws: DataError.self) { try TextDataset.agNews(file: tmp.file("ag2.tsv")) }
    }

    @Test func trecWithLatin1() throws {
        let tmp = DataTempDir()
        defer { tmp.cleanup() }
        // 0xE9 alone is invalid UTF-8: the file is read as latin-1 ("é").
        var bytes = Array("NUM:dist How far is it from Denver to Aspen ?\nHUM:ind Who was Andr".utf8)
        bytes += [0xE9] + Array(" ?\nLOC:city Where ?\n".utf8)
        try tmp.write("trec.label", bytes)
        let coarse = try TextDataset.trec(file: tmp.file("trec.label"))
        #expect(coarse.labels == [5, 3, 4])
        #expect(coarse.texts[1] == "Who was Andr\u{e9} ?")
        let fine = try TextDataset.trec(file: tmp.file("trec.label"), fine: true)
        #expect(fine.classNames == ["HUM:ind", "LOC:city", "NUM:dist"])
        #expect(fine.labels == [2, 0, 1])
        try tmp.write("bad.label", Array("XYZ:abc question\n".utf8))
        #expect(throws: DataError.self) { try TextDataset.trec(file: tmp.file("bad.label")) }
    }

    @Test func movieReviewsLatin1() throws {
        let tmp = DataTempDir()
        defer { tmp.cleanup() }
        try tmp.write("mr/rt-polarity.pos", Array("a gorgeous film \n".utf8) + [0x63, 0x61, 0x66, 0xE9, 0x20, 0x21, 0x0A])
        try tmp.write("mr/rt-polarity.neg", Array("dull\n\nboring\n".utf8))
        let mr = try TextDataset.movieReviews(dir: tmp.file("mr"))
        #expect(mr.texts == ["dull", "boring", "a gorgeous film", "caf\u{e9} !"])
        #expect(mr.labels == [0, 0, 1, 1])
        #expect(mr.classCounts() == [2, 2])
        #expect(try mr.subset([3]).texts == ["caf\u{e9} !"])
        #expect {
            try TextDataset.movieReviews(dir: tmp.file("missing"))
        } throws: { e in "\(e)".contains("rt-polarity.neg") }
    }

    @Test func corpus() throws {
        let tmp = DataTempDir()
        defer { tmp.cleanup() }
        try tmp.write("c.txt", Array("First Citizen:\nBefore we proceed\n".utf8))
        #expect(try PlainTextCorpus.read(file: tmp.file("c.txt")) == "First Citizen:\nBefore we proceed\n")
        #expect(try PlainTextCorpus.bytes(file: tmp.file("c.txt")).count == 33)
    }
}
