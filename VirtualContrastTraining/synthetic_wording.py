"""Every word that marks an image as synthetic, in one place.

A synthetic DES must never be mistaken for an acquired one, so each medium
says so in its own form; the forms differ (a file name has no spaces, a burnt
marker must stay short, a report has room to explain), the source is this
module. Nothing here imports: every layer of both halves may use it.
"""

#: In file names, before the extension: P1_L_CC_SYNTHETIC-DES.nrrd.
FILE_SUFFIX = "_SYNTHETIC-DES"
#: DICOM SeriesDescription of an exported synthetic DES; the description of a Slicer synthetic volume.
SERIES_DESCRIPTION = "SYNTHETIC DES \u2013 not for diagnosis"
#: Drawn into the pixels on request (BurnedInAnnotation YES).
PIXEL_MARKER = "SYNTHETIC - NOT FOR DIAGNOSIS"
#: The warning field of a synthetic image's metadata (NRRD key VirtualContrast.Warning).
METADATA_WARNING = "SYNTHETIC DES - not for diagnosis"
#: The sentence of every evaluation file (summary.md, report, provenance.json, reader study, Slicer tables).
NOT_FOR_DIAGNOSIS = ("Synthetic DES images are computed by a neural network from the low-energy image. "
                     "They are for research and method evaluation only and must not be used for diagnosis.")
#: The note in the title of a heatmap panel figure.
FIGURE_NOTE = "(synthetic images are not for diagnosis)"
#: The end of a synthetic volume's name in Slicer: "<LE name> – synthetic DES".
NODE_SUFFIX = " \u2013 synthetic DES"
#: The word that marks an image synthetic in each of the header fields below.
SYNTHETIC_WORD = "SYNTHETIC"
#: Every DICOM header field our writer (synthetic_export) marks with SYNTHETIC_WORD: ImageType's fourth value,
#: SeriesDescription, DerivationDescription and Manufacturer. Import reads them all; one is enough for a file
#: never to be paired as a real image. BurnedInAnnotation is no marker by itself (real images carry burnt text).
SYNTHETIC_MARKER_FIELDS = ("ImageType", "SeriesDescription", "DerivationDescription", "Manufacturer")
#: The metadata key that states a synthetic image's intensity units (NRRD field, PNG text chunk, TIFF description).
UNITS_FIELD = "VirtualContrast.IntensityUnits"
#: Its value: a synthetic DES is in the units of the DES its model was trained on (the sidecar's DES output window),
#: whatever the LE's units were. Filled by `intensity_units`; DICOM carries it in DerivationDescription.
INTENSITY_UNITS = "DES units of the training set, window {low:g}..{high:g}"


def intensity_units(low: float, high: float) -> str:
    return INTENSITY_UNITS.format(low=low, high=high)
